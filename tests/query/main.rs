//! Queries against real peers, called through the library: the Modality Worklist from
//! dcmtk's wlmscpfs and Orthanc's worklists plugin, patient lookup by C-FIND and QIDO-RS
//! against Orthanc, and pynetdicom SCPs for the cancel path, the study-level fallback and
//! both over DICOM TLS.

#[path = "../common/mod.rs"]
mod common;

mod end_to_end;
mod lookup;
mod pynetdicom;
mod worklist;

use photo_pacs::config::Settings;

/// Settings that send queries to `aet` on 127.0.0.1:`port`.
pub fn settings_for(aet: &str, port: u16) -> Settings {
    Settings {
        pacs_host: "127.0.0.1".into(),
        pacs_port: port,
        pacs_called_aet: aet.into(),
        local_calling_aet: "PHOTO_PACS".into(),
        pacs_timeout_s: 20,
        ..Settings::default()
    }
}
