//! DICOM message exchange with the PACS, one file per job: setting up the association,
//! storing objects, the echo test, queries (C-FIND), and the command sets they send.

mod association;
mod echo;
pub mod find;
pub mod message;
mod store;

pub use echo::echo;
pub use find::{FindError, Found, find};
pub use store::send;
