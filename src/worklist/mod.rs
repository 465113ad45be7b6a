//! Modality Worklist query (placeholder until the C-FIND SCU lands).

use chrono::{NaiveDate, NaiveDateTime};

use crate::config::Settings;
use crate::pacs::PacsError;
use crate::study::{Order, Patient};

pub struct Query {
    pub modality: String,
    pub station_aet: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub max: usize,
}

pub struct Entry {
    pub patient: Patient,
    pub order: Order,
    pub step_start: Option<NaiveDateTime>,
    pub modality: String,
    pub station_aets: Vec<String>,
}

#[derive(Default)]
pub struct Worklist {
    pub entries: Vec<Entry>,
    pub truncated: bool,
    pub skipped: usize,
}

pub async fn query(_s: &Settings, _q: &Query) -> Result<Worklist, PacsError> {
    Err(PacsError::configuration(
        "the worklist query is not built yet",
    ))
}
