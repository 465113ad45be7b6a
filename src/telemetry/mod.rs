//! Logs (journald or stderr, never patient data) and Prometheus metrics.

pub mod events;
mod metrics;

pub use events::Events;
pub use metrics::{Health, Metrics};

use std::io::Write;

/// Sends log records to the journal when stderr is connected to it (running under systemd),
/// otherwise prints plain lines on stderr. Other crates log at warn and above only.
pub fn init_logging(level: log::LevelFilter) {
    if systemd_journal_logger::connected_to_journal()
        && let Ok(journal) = systemd_journal_logger::JournalLog::new()
        && journal
            .with_syslog_identifier("photo-pacs".into())
            .install()
            .is_ok()
    {
        log::set_max_level(level);
        return;
    }
    let _ = env_logger::Builder::new()
        .filter_level(log::LevelFilter::Warn.min(level))
        .filter_module("photo_pacs", level)
        .target(env_logger::Target::Stderr)
        .format(|buf, record| {
            let ts = chrono::Local::now().format("%Y-%m-%dT%H:%M:%S%.3f%:z");
            write!(buf, "{ts} {:<5} {}", record.level(), record.args())?;
            let mut kv = KvLine(String::new());
            let _ = record.key_values().visit(&mut kv);
            writeln!(buf, "{}", kv.0)
        })
        .try_init();
}

/// Appends ` key=value` for each structured field of a record.
struct KvLine(String);

impl<'kvs> log::kv::VisitSource<'kvs> for KvLine {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        use std::fmt::Write as _;
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}
