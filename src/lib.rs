//! Photo PACS: phone photos into the hospital PACS as DICOM objects.
#![forbid(unsafe_code)]

pub mod access;
pub mod anatomy;
pub mod app;
pub mod backup;
pub mod cli;
pub mod clock;
pub mod config;
pub mod convert;
pub mod dicom;
pub mod http;
pub mod intake;
pub mod lookup;
pub mod outbox;
pub mod pacs;
pub mod provision;
pub mod reception;
pub mod selfcheck;
pub mod status;
pub mod storage;
pub mod study;
pub mod supervisor;
pub mod telemetry;
pub mod update;
pub mod worklist;
