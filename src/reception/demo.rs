//! The demo backend's worklist: three made-up patients scheduled today, so the list and the
//! lookup can be tried without a PACS. Their names say they are not real.

use chrono::{NaiveDate, NaiveTime};

use crate::study::{Code, Order, Patient, Sex};
use crate::worklist::{Entry, Query};

/// A `2.25` arc made once from a random UUID; each demo study hangs under it by date.
const DEMO_ROOT: &str = "2.25.253829779981012625778441772358322500922";

struct Demo {
    id: &'static str,
    name: &'static str,
    birth: (i32, u32, u32),
    sex: Sex,
    time: (u32, u32),
    procedure: &'static str,
}

const PATIENTS: [Demo; 3] = [
    Demo {
        id: "DEMO001",
        name: "DEMO^ALICE",
        birth: (1961, 4, 12),
        sex: Sex::Female,
        time: (9, 0),
        procedure: "Wound photography, left heel",
    },
    Demo {
        id: "DEMO002",
        name: "測試^小明",
        birth: (1984, 11, 3),
        sex: Sex::Male,
        time: (10, 30),
        procedure: "Dermatology lesion photo",
    },
    Demo {
        id: "DEMO003",
        name: "DEMO^CAROL",
        birth: (2015, 7, 22),
        sex: Sex::Female,
        time: (14, 15),
        procedure: "Post-operative scar",
    },
];

fn patient(d: &Demo) -> Patient {
    Patient {
        id: d.id.into(),
        name: d.name.into(),
        birth_date: NaiveDate::from_ymd_opt(d.birth.0, d.birth.1, d.birth.2),
        sex: d.sex,
        issuer: "DEMO".into(),
    }
}

/// The demo entries for the query's first day, filtered as a provider would.
pub fn entries(q: &Query) -> Vec<Entry> {
    if !(q.modality.is_empty() || q.modality == "XC") {
        return Vec::new();
    }
    let day = q.from.max(super::local_today().min(q.to));
    PATIENTS
        .iter()
        .enumerate()
        .take(q.max)
        .map(|(i, d)| {
            let n = i + 1;
            Entry {
                patient: patient(d),
                order: Order {
                    study_instance_uid: format!("{DEMO_ROOT}.{}.{n}", day.format("%Y%m%d")),
                    accession_number: format!("DEMO{}{n}", day.format("%m%d")),
                    requested_procedure_id: format!("RP{n}"),
                    requested_procedure_description: d.procedure.into(),
                    step_id: format!("SPS{n}"),
                    step_description: d.procedure.into(),
                    protocol_codes: vec![Code {
                        value: "PHOTO".into(),
                        scheme: "99DEMO".into(),
                        meaning: "Clinical photography".into(),
                    }],
                },
                step_start: NaiveTime::from_hms_opt(d.time.0, d.time.1, 0).map(|t| day.and_time(t)),
                modality: "XC".into(),
                station_aets: Vec::new(),
            }
        })
        .collect()
}

pub fn lookup(id: &str) -> Option<super::KnownPatient> {
    PATIENTS
        .iter()
        .find(|d| d.id.eq_ignore_ascii_case(id))
        .map(|d| super::KnownPatient {
            patient: patient(d),
            studies: Some(1),
        })
}
