//! DICOM terms that the converter, the PACS backends and the settings all use: transfer
//! syntaxes, character sets, UIDs and SOP classes. Kept apart so that none of those
//! modules has to import another for them.

mod charset;
mod iod;
mod syntax;
pub mod uid;
pub mod value;

pub use charset::Charset;
pub use iod::Iod;
pub use syntax::TransferSyntax;
pub use syntax::name as transfer_syntax_name;
pub use uid::UidRoot;
