//! Patient lookup by ID (placeholder until the C-FIND SCU lands).

use crate::config::Settings;
use crate::pacs::{PacsError, Sender};
use crate::study::Patient;

pub enum Level {
    Patient,
    Study,
    Qido,
}

pub struct Known {
    pub patient: Patient,
    pub studies: Option<u32>,
    pub level: Level,
}

impl Sender {
    pub async fn lookup(
        &self,
        _s: &Settings,
        _patient_id: &str,
    ) -> Result<Option<Known>, PacsError> {
        Ok(None)
    }
}
