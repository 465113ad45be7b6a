//! The delivery worker: one task that sends whatever is due, oldest first, for as long as
//! the gateway runs.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::Outbox;
use crate::config::Settings;
use crate::pacs::Sender;

/// The longest sleep: prunes old records this often.
const IDLE: Duration = Duration::from_secs(60);

/// Runs until the gateway stops. `settings` gives the settings in force at each attempt
/// (timeouts, TLS files, credentials); where each study goes is its own.
pub async fn run(
    outbox: Arc<Outbox>,
    sender: Arc<Sender>,
    settings: impl Fn() -> Arc<Settings> + Send + Sync + 'static,
) {
    loop {
        let now = Utc::now();
        outbox.prune(now);
        match outbox.take_due(now) {
            Some(seqs) => {
                let current = settings();
                outbox.attempt(&sender, &current, &seqs).await;
            }
            None => {
                let wait = outbox.next_due_in(now).unwrap_or(IDLE).min(IDLE);
                tokio::select! {
                    () = outbox.wake.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}
