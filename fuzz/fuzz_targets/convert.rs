//! Any file as a photo: probe (format, size, truncation) and, when it passes, the whole
//! conversion to DICOM in the transfer syntax, size (originals keep a JPEG as it is,
//! through libjpeg-turbo), object kind and body site the first byte picks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use photo_pacs::anatomy::{REGIONS, Side, Site};
use photo_pacs::config::{Iod, Settings, TransferSyntax};
use photo_pacs::convert::{InstanceIds, Options, convert, probe};
use photo_pacs::study::{Code, Exam, Order, Patient, Sex, Study};

/// Small enough that one input never takes long: a big picture is a different test.
const MAX_PIXELS: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, photo)) = data.split_first() else { return };
    let Ok(p) = probe(photo, MAX_PIXELS) else { return };
    let settings = Settings {
        local_transfer_syntax: TransferSyntax::ALL[pick as usize % TransferSyntax::ALL.len()],
        local_resize_max: if pick & 0x80 == 0 { 256 } else { 0 },
        local_iod: if pick & 0x20 == 0 { Iod::SecondaryCapture } else { Iod::VlPhotographic },
        ..Settings::default()
    };
    let region = &REGIONS[usize::from(pick) % REGIONS.len()];
    let site = (pick & 0x10 != 0).then(|| Site {
        region: Some(region),
        side: region.paired.then_some(Side::Both),
        note: "fuzz".into(),
    });
    let study = Study {
        patient: Patient {
            id: "FUZZ".into(),
            name: "Fuzz^Test".into(),
            birth_date: None,
            sex: Sex::Unknown,
            issuer: String::new(),
        },
        exam: Exam {
            time: chrono::Local::now().fixed_offset(),
            description: String::new(),
            clock_correction: chrono::Duration::zero(),
        },
        // Half the inputs go as a worklist entry's study, with its request attributes.
        order: (pick & 0x40 != 0).then(|| Order {
            study_instance_uid: "2.25.4".into(),
            accession_number: "FUZZ-ACC".into(),
            requested_procedure_id: "RP1".into(),
            requested_procedure_description: "Fuzz".into(),
            step_id: "SPS1".into(),
            step_description: String::new(),
            protocol_codes: vec![Code {
                value: "F".into(),
                scheme: "99FUZZ".into(),
                meaning: "Fuzz".into(),
            }],
        }),
    };
    let ids = InstanceIds {
        study_uid: "2.25.1".into(),
        series_uid: "2.25.2".into(),
        sop_uid: "2.25.3".into(),
        number: 1,
        created: chrono::Local::now().fixed_offset(),
    };
    let _ = convert(photo, &p, &study, &ids, site.as_ref(), &Options::from_settings(&settings, MAX_PIXELS, 64 << 20));
});
