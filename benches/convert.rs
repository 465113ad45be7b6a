//! In-process conversion benchmark: the median time of `probe` + `convert` for each phone
//! photo made by `bench/make-photos.sh`, without process start-up. The whole-process
//! comparison with the reference and the decode floor is `bench/convert.sh`.
//!
//!     bench/make-photos.sh && cargo bench --bench convert [-- --json]
//!
//! With `--json`, one JSON line per photo and transfer syntax instead of the table (what
//! `bench/convert.sh` reads).

use std::time::{Duration, Instant};

use chrono::Local;
use photo_pacs::config::{Settings, TransferSyntax};
use photo_pacs::convert::{self, InstanceIds, Options};
use photo_pacs::study::{Exam, Patient, Sex, Study};

const RUNS: usize = 15;

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-photos");
    let study = Study {
        patient: Patient {
            id: "BENCH".into(),
            name: "Bench^Photo".into(),
            birth_date: None,
            sex: Sex::Unknown,
            issuer: String::new(),
        },
        exam: Exam {
            time: Local::now().fixed_offset(),
            description: String::new(),
            clock_correction: chrono::Duration::zero(),
        },
        order: None,
    };
    if !json {
        println!(
            "| photo | transfer syntax | probe median | probe + convert median | output | decoded at |"
        );
        println!("|---|---|---|---|---|---|");
    }
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
            let opts = Options::from_settings(&settings, 100_000_000, 128 << 20);
            let mut probe_times = Vec::new();
            let mut total_times = Vec::new();
            let mut size = (0, 0);
            let mut source = (0, 0);
            for i in 0..RUNS + 2 {
                let start = Instant::now();
                let probe = convert::probe(&bytes, opts.max_pixels).expect("probe");
                let probed = start.elapsed();
                source = (probe.width, probe.height);
                let ids = InstanceIds {
                    study_uid: "2.25.1".into(),
                    series_uid: "2.25.2".into(),
                    sop_uid: "2.25.3".into(),
                    number: 1,
                    created: Local::now().fixed_offset(),
                };
                let out =
                    convert::convert(&bytes, &probe, &study, &ids, None, &opts).expect("convert");
                let total = start.elapsed();
                size = (out.columns, out.rows);
                if i >= 2 {
                    // The first two warm caches and the thread pool.
                    probe_times.push(probed);
                    total_times.push(total);
                }
            }
            let (probe_ms, total_ms) = (ms(median(probe_times)), ms(median(total_times)));
            let scale = decode_scale(source.0, size.0);
            if json {
                println!(
                    "{{\"photo\":\"{name}\",\"ts\":\"{ts:?}\",\"probe_median_ms\":{probe_ms:.1},\"total_median_ms\":{total_ms:.1},\"source\":[{},{}],\"output\":[{},{}],\"decoded_at\":\"{scale}\",\"runs\":{RUNS}}}",
                    source.0, source.1, size.0, size.1
                );
            } else {
                println!(
                    "| {name} | {ts:?} | {probe_ms:.1} ms | {total_ms:.1} ms | {}x{} | {scale} |",
                    size.0, size.1
                );
            }
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
    if !json {
        println!("\npeak resident memory of this process (photos loaded once): {hwm}");
    }
}

/// The JPEG DCT scale the output shows: `1/4` when the output is the source divided by a
/// power of two (no resampling after the decode), else the scale plus Lanczos.
fn decode_scale(source_width: u32, output_width: u32) -> String {
    for d in [1, 2, 4, 8] {
        if source_width.div_ceil(d) == output_width {
            return format!("1/{d}");
        }
    }
    let d = [8, 4, 2, 1]
        .into_iter()
        .find(|d| source_width.div_ceil(*d) >= output_width)
        .unwrap_or(1);
    format!("1/{d} + Lanczos3")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
