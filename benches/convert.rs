//! In-process conversion benchmark: the median time of `probe` + `convert` for each phone
//! photo made by `bench/make-photos.sh`, without process start-up. The whole-process
//! comparison with the reference and the decode floor is `bench/convert.sh`.
//!
//!     bench/make-photos.sh && cargo bench --bench convert

use std::time::{Duration, Instant};

use chrono::Local;
use photo_pacs::config::{Settings, TransferSyntax};
use photo_pacs::convert::{self, InstanceIds, Options};
use photo_pacs::study::{Exam, Patient, Sex, Study};

const RUNS: usize = 15;

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-photos");
    let study = Study {
        patient: Patient {
            id: "BENCH".into(),
            name: "Bench^Photo".into(),
            birth_date: None,
            sex: Sex::Unknown,
        },
        exam: Exam {
            time: Local::now().fixed_offset(),
            description: String::new(),
        },
    };
    println!("| photo | transfer syntax | probe median | probe + convert median | output |");
    println!("|---|---|---|---|---|");
    for name in ["phone-12mp.jpg", "phone-48mp.jpg"] {
        let path = dir.join(name);
        let Ok(bytes) = std::fs::read(&path) else {
            eprintln!(
                "{} is missing: run bench/make-photos.sh first",
                path.display()
            );
            std::process::exit(2);
        };
        for ts in [
            TransferSyntax::ImplicitVrLittleEndian,
            TransferSyntax::JpegBaseline,
        ] {
            let settings = Settings {
                local_transfer_syntax: ts,
                ..Settings::default()
            };
            let opts = Options::from_settings(&settings, 100_000_000);
            let mut probe_times = Vec::new();
            let mut total_times = Vec::new();
            let mut size = (0, 0);
            for i in 0..RUNS + 2 {
                let start = Instant::now();
                let probe = convert::probe(&bytes, opts.max_pixels).expect("probe");
                let probed = start.elapsed();
                let ids = InstanceIds {
                    study_uid: "2.25.1".into(),
                    series_uid: "2.25.2".into(),
                    sop_uid: "2.25.3".into(),
                    number: 1,
                    created: Local::now().fixed_offset(),
                };
                let out = convert::convert(&bytes, &probe, &study, &ids, &opts).expect("convert");
                let total = start.elapsed();
                size = (out.columns, out.rows);
                if i >= 2 {
                    // The first two warm caches and the thread pool.
                    probe_times.push(probed);
                    total_times.push(total);
                }
            }
            println!(
                "| {name} | {ts:?} | {:.1} ms | {:.1} ms | {}x{} |",
                ms(median(probe_times)),
                ms(median(total_times)),
                size.0,
                size.1
            );
        }
    }
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(str::to_string)
        })
        .unwrap_or_default();
    println!("\npeak resident memory of this process (photos loaded once): {hwm}");
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
