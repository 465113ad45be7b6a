//! The durable store-and-forward queue: every accepted study is on disk (synced, committed)
//! before the PACS is contacted, delivered oldest first, and tried again with backoff until
//! the PACS takes it or refuses it for good. A study keeps its SOP Instance UIDs for life:
//! a retry resends the same objects, never new ones, and never one the PACS acknowledged.

mod backoff;
pub mod record;
pub mod space;
pub mod spool;
mod worker;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use record::{Delivery, StudyState};
pub use worker::run as run_worker;

use record::{Record, State};

pub use record::RecordInstance;

use crate::config::Settings;
use crate::pacs::{Destination, InstanceStatus, Outgoing, PacsError, Sender};
use crate::storage;
use crate::telemetry::events::Outcome;
use crate::telemetry::{Events, Metrics};

/// How long an `Idempotency-Key` answers for its study.
pub const KEY_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a delivered study's record (identifiers and states, no patient data) stays,
/// so its status and a repeated submission can still be answered.
const DONE_LIFETIME: Duration = KEY_LIFETIME;
/// At most this many studies, or instances, share one association when a backlog drains.
const BATCH_STUDIES: usize = 64;
const BATCH_INSTANCES: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("no study {0} in the outbox")]
    NotFound(String),
    #[error("study {0} is being sent right now; try again in a moment")]
    Busy(String),
    #[error("study {0} has nothing left to send")]
    NothingToRetry(String),
    #[error(
        "another photo-pacs process holds the outbox in {0} (is the gateway running? stop it, or use the settings page)"
    )]
    Locked(PathBuf),
    #[error("the outbox in {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl OutboxError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        OutboxError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// One instance as the API shows it.
#[derive(Clone, Debug)]
pub struct InstanceView {
    pub index: u32,
    pub sop_instance_uid: String,
    pub delivery: Delivery,
    pub reason: Option<String>,
}

/// A study as the API shows it: identifiers and delivery state, nothing of the patient.
#[derive(Clone, Debug)]
pub struct StudyView {
    pub id: String,
    pub seq: u64,
    pub created: DateTime<Utc>,
    pub state: StudyState,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub destination: Destination,
    pub made_for: Destination,
    pub instances: Vec<InstanceView>,
    pub attempts: u32,
    pub last_attempt: Option<DateTime<Utc>>,
    pub next_attempt: Option<DateTime<Utc>>,
    pub last_error: Option<PacsError>,
    pub files_removed: bool,
    dir: PathBuf,
}

impl StudyView {
    /// The first objects's Patient ID, masked (`A12***`), for the admin's list: enough to
    /// tell studies apart, not enough to name anyone. Reads the file's header only.
    pub fn masked_patient_id(&self) -> Option<String> {
        let first = std::fs::read_dir(&self.dir)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
            .min()?;
        let obj = dicom_object::OpenFileOptions::new()
            .read_until(dicom_dictionary_std::tags::PIXEL_DATA)
            .open_file(first)
            .ok()?;
        let id = obj
            .element(dicom_dictionary_std::tags::PATIENT_ID)
            .ok()?
            .to_str()
            .ok()?
            .trim()
            .to_string();
        Some(mask(&id))
    }
}

/// Keeps at most the first three characters, fewer for short IDs, and always hides the rest.
pub fn mask(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    let shown = chars.len().saturating_sub(1).min(3);
    let mut out: String = chars[..shown].iter().collect();
    out.push_str("***");
    out
}

/// A study built in its intake folder, ready to commit.
pub struct Draft {
    pub id: String,
    pub intake_dir: PathBuf,
    pub idempotency_key: Option<String>,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub destination: Destination,
    pub instances: Vec<RecordInstance>,
}

/// What start-up found, for the log, the metrics and the settings page.
#[derive(Debug, Default)]
pub struct Opened {
    pub resumed: usize,
    pub incomplete_removed: usize,
    pub legacy_folders: usize,
    pub unreadable: usize,
}

struct Entry {
    dir: PathBuf,
    record: Record,
    state: State,
    /// An attempt is under way (known only to this process).
    sending: bool,
}

impl Entry {
    fn view(&self) -> StudyView {
        StudyView {
            id: self.record.id.clone(),
            seq: self.record.seq,
            created: self.record.created,
            state: self.state.study_state(self.sending),
            study_instance_uid: self.record.study_instance_uid.clone(),
            series_instance_uid: self.record.series_instance_uid.clone(),
            destination: self.state.destination.clone(),
            made_for: self.record.destination.clone(),
            instances: self
                .record
                .instances
                .iter()
                .zip(&self.state.instances)
                .map(|(r, s)| InstanceView {
                    index: r.index,
                    sop_instance_uid: r.sop_instance_uid.clone(),
                    delivery: s.delivery,
                    reason: s.reason(),
                })
                .collect(),
            attempts: self.state.attempts,
            last_attempt: self.state.last_attempt,
            next_attempt: self.state.next_attempt,
            last_error: self.state.last_error.clone(),
            files_removed: self.state.files_removed,
            dir: self.dir.clone(),
        }
    }

    fn has_pending(&self) -> bool {
        self.state.has_pending()
    }
}

#[derive(Default)]
struct Inner {
    entries: BTreeMap<u64, Entry>,
    by_id: HashMap<String, u64>,
    by_key: HashMap<String, u64>,
    next_seq: u64,
}

impl Inner {
    /// The study an admin acts on, with its sequence number: not while it is being sent.
    fn idle_entry(&mut self, id: &str) -> Result<(u64, &mut Entry), OutboxError> {
        let seq = *self
            .by_id
            .get(id)
            .ok_or_else(|| OutboxError::NotFound(id.to_string()))?;
        match self.entries.get_mut(&seq) {
            None => Err(OutboxError::NotFound(id.to_string())),
            Some(e) if e.sending => Err(OutboxError::Busy(id.to_string())),
            Some(e) => Ok((seq, e)),
        }
    }
}

pub struct Outbox {
    root: PathBuf,
    keep_files: bool,
    retry_max: Duration,
    metrics: Arc<Metrics>,
    inner: Mutex<Inner>,
    /// Bumped on every change: waiters for a first attempt watch it.
    changed: tokio::sync::watch::Sender<u64>,
    /// Tells the worker something may be due.
    wake: tokio::sync::Notify,
    /// One lock per `Idempotency-Key` being processed, so two copies of a submission
    /// arriving together make one study.
    key_locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
    /// The flock on `.lock`, held while this lives.
    _lock: Option<File>,
    /// Deliveries and retries, for the status page (study IDs only).
    events: Arc<Events>,
    /// The last stored delivery and the last failure, for the status page.
    health: Mutex<DeliveryHealth>,
}

/// The outbox at a glance.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    pub queued: usize,
    /// When the oldest waiting study arrived.
    pub oldest: Option<DateTime<Utc>>,
    /// Refused (all or part) and waiting for an admin.
    pub failed: usize,
}

/// When the outbox last got a study into the PACS, and its last failure.
#[derive(Clone, Debug, Default)]
pub struct DeliveryHealth {
    pub last_stored: Option<DateTime<Utc>>,
    pub last_error: Option<(DateTime<Utc>, PacsError)>,
}

impl Outbox {
    /// Opens the outbox in `root` (DICOM_DIR), recovering what a crash left: half-built
    /// studies are removed, committed ones resume. With `exclusive`, fails if another
    /// process (a running gateway) holds it.
    pub fn open(
        root: &Path,
        keep_files: bool,
        retry_max: Duration,
        metrics: Arc<Metrics>,
        exclusive: bool,
    ) -> Result<(Self, Opened), OutboxError> {
        storage::create_private_dir(root).map_err(|e| OutboxError::io(root, e))?;
        let lock = if exclusive {
            Some(take_lock(root)?)
        } else {
            None
        };
        let mut opened = Opened::default();
        let mut inner = Inner::default();
        // Read-only callers (the command line's list) must not change anything.
        let recovery = spool::scan(root, exclusive).map_err(|e| OutboxError::io(root, e))?;
        opened.incomplete_removed = recovery.incomplete_removed;
        opened.legacy_folders = recovery.legacy.len();
        opened.unreadable = recovery.unreadable.len();
        let now = Utc::now();
        for found in recovery.found {
            let mut state = found.state;
            if state.has_pending() {
                // Resume at once: whatever the pause was, the box was off for part of it.
                state.next_attempt = Some(now);
                opened.resumed += 1;
            }
            if found.state_rebuilt {
                log::warn!(study = found.record.id.as_str(); "outbox: a study's state file was unreadable; its instances will be sent again under the same UIDs");
            }
            let seq = found.record.seq;
            inner.next_seq = inner.next_seq.max(seq + 1);
            inner.by_id.insert(found.record.id.clone(), seq);
            if let Some(k) = &found.record.idempotency_key {
                inner.by_key.insert(k.clone(), seq);
            }
            inner.entries.insert(
                seq,
                Entry {
                    dir: found.dir,
                    record: found.record,
                    state,
                    sending: false,
                },
            );
        }
        inner.next_seq = inner.next_seq.max(1);
        let (changed, _) = tokio::sync::watch::channel(0);
        let outbox = Outbox {
            root: root.to_path_buf(),
            keep_files,
            retry_max,
            metrics,
            inner: Mutex::new(inner),
            changed,
            wake: tokio::sync::Notify::new(),
            key_locks: Mutex::new(HashMap::new()),
            _lock: lock,
            events: Arc::new(Events::new()),
            health: Mutex::new(DeliveryHealth::default()),
        };
        outbox
            .metrics
            .outbox_incomplete_removed(opened.incomplete_removed as u64);
        Ok((outbox, opened))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn touch(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Where deliveries and retries are told (the gateway's one ring).
    pub fn set_events(&mut self, events: Arc<Events>) {
        self.events = events;
    }

    pub fn health(&self) -> DeliveryHealth {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A new study ID: random, so it says nothing about the patient or the time.
    pub fn new_id() -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }

    /// Makes the folder a study is built in.
    pub fn begin(&self, id: &str) -> Result<PathBuf, OutboxError> {
        let dir = self.root.join(format!("{}{id}", spool::INTAKE_PREFIX));
        storage::create_private_dir(&dir).map_err(|e| OutboxError::io(&dir, e))?;
        Ok(dir)
    }

    /// Commits a built study (blocking file I/O: call from a blocking task). From here on it
    /// is accepted: it is delivered even if the gateway stops before the first attempt. The
    /// study starts as "sending": the caller makes the first attempt.
    pub fn commit(&self, draft: Draft) -> Result<StudyView, OutboxError> {
        let seq = {
            let mut inner = self.lock();
            let seq = inner.next_seq;
            inner.next_seq += 1;
            seq
        };
        let record = Record {
            version: record::RECORD_VERSION,
            id: draft.id.clone(),
            seq,
            created: Utc::now(),
            idempotency_key: draft.idempotency_key,
            study_instance_uid: draft.study_instance_uid,
            series_instance_uid: draft.series_instance_uid,
            destination: draft.destination,
            instances: draft.instances,
        };
        let state = State::new(&record);
        let dir = self.root.join(&draft.id);
        spool::commit(&draft.intake_dir, &dir, &record)
            .map_err(|e| OutboxError::io(&draft.intake_dir, e))?;
        let entry = Entry {
            dir,
            record,
            state,
            sending: true,
        };
        let view = entry.view();
        {
            let mut inner = self.lock();
            inner.by_id.insert(draft.id, seq);
            if let Some(k) = &entry.record.idempotency_key {
                inner.by_key.insert(k.clone(), seq);
            }
            inner.entries.insert(seq, entry);
        }
        self.metrics.study("accepted");
        self.touch();
        Ok(view)
    }

    pub fn view(&self, id: &str) -> Option<StudyView> {
        let inner = self.lock();
        let seq = inner.by_id.get(id)?;
        inner.entries.get(seq).map(Entry::view)
    }

    /// Every study, oldest first.
    pub fn list(&self) -> Vec<StudyView> {
        self.lock().entries.values().map(Entry::view).collect()
    }

    /// The study a key made within its lifetime.
    pub fn find_key(&self, key: &str) -> Option<StudyView> {
        let inner = self.lock();
        let seq = inner.by_key.get(key)?;
        let entry = inner.entries.get(seq)?;
        let age = Utc::now().signed_duration_since(entry.record.created);
        (age.to_std().unwrap_or_default() < KEY_LIFETIME).then(|| entry.view())
    }

    /// The lock for one key: hold it from the end of the upload until the study is
    /// committed, then look the key up again.
    pub fn key_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.key_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.retain(|_, w| w.strong_count() > 0);
        if let Some(l) = locks.get(key).and_then(Weak::upgrade) {
            return l;
        }
        let l = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(key.to_string(), Arc::downgrade(&l));
        l
    }

    /// Waits until the study's first attempt has ended, or `limit` has passed.
    pub async fn wait_attempted(&self, id: &str, limit: Duration) {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            {
                let inner = self.lock();
                let done = inner
                    .by_id
                    .get(id)
                    .and_then(|s| inner.entries.get(s))
                    .is_none_or(|e| e.state.attempts > 0 && !e.sending);
                if done {
                    return;
                }
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// Makes one delivery attempt of the given studies (all for one destination, all
    /// marked sending), records every instance's outcome as the PACS gives it, and
    /// schedules what is left.
    pub async fn attempt(&self, sender: &Sender, current: &Settings, seqs: &[u64]) {
        let Some((destination, batch, owners)) = self.batch(seqs) else {
            self.finish_without_attempt(seqs);
            return;
        };
        let dest_name = destination.describe();
        log::debug!(studies = seqs.len(), instances = batch.len(); "delivering to {dest_name}");
        let mut progress = |i: usize, status: &InstanceStatus| {
            if let Some(&(seq, idx)) = owners.get(i) {
                self.note(seq, idx, status);
            }
        };
        let result = sender
            .deliver(&destination, current, &batch, &mut progress)
            .await;
        self.finish_attempt(seqs, &destination, &owners, result);
    }

    /// The objects still to send of `seqs`, with (study, instance) for each.
    #[allow(clippy::type_complexity)]
    fn batch(&self, seqs: &[u64]) -> Option<(Destination, Vec<Outgoing>, Vec<(u64, usize)>)> {
        let inner = self.lock();
        let mut destination = None;
        let mut batch = Vec::new();
        let mut owners = Vec::new();
        for seq in seqs {
            let Some(e) = inner.entries.get(seq) else {
                continue;
            };
            destination.get_or_insert_with(|| e.state.destination.clone());
            for (idx, (r, s)) in e
                .record
                .instances
                .iter()
                .zip(&e.state.instances)
                .enumerate()
            {
                if s.delivery != Delivery::Pending {
                    continue;
                }
                let Some(ts) = r.transfer_syntax() else {
                    continue;
                };
                batch.push(Outgoing {
                    index: r.index,
                    sop_instance_uid: r.sop_instance_uid.clone(),
                    sop_class_uid: r.sop_class_uid.clone(),
                    transfer_syntax: ts,
                    path: e.dir.join(&r.file),
                });
                owners.push((*seq, idx));
            }
        }
        let destination = destination?;
        (!batch.is_empty()).then_some((destination, batch, owners))
    }

    fn finish_without_attempt(&self, seqs: &[u64]) {
        let mut inner = self.lock();
        for seq in seqs {
            if let Some(e) = inner.entries.get_mut(seq) {
                e.sending = false;
            }
        }
        drop(inner);
        self.touch();
    }

    /// One instance's outcome, recorded before the next object goes: a crash then resends
    /// only what the PACS had not acknowledged.
    fn note(&self, seq: u64, idx: usize, status: &InstanceStatus) {
        let mut inner = self.lock();
        let Some(e) = inner.entries.get_mut(&seq) else {
            return;
        };
        let Some(i) = e.state.instances.get_mut(idx) else {
            return;
        };
        i.apply(status);
        self.metrics.delivery(match status {
            InstanceStatus::Success => "stored",
            InstanceStatus::Warning(_) => "warning",
            InstanceStatus::Failed(f) => f.class.as_str(),
        });
        if let Err(err) = spool::write_state(&e.dir, &e.state, false) {
            log::warn!(study = e.record.id.as_str(); "outbox: cannot write a study's state ({err}); it is kept in memory");
        }
    }

    fn finish_attempt(
        &self,
        seqs: &[u64],
        destination: &Destination,
        owners: &[(u64, usize)],
        result: Result<Vec<InstanceStatus>, PacsError>,
    ) {
        let now = Utc::now();
        let mut to_sync = Vec::new();
        let mut to_clean = Vec::new();
        let mut destination_up = false;
        let mut finished = Vec::new();
        let mut told = Vec::new();
        {
            let mut inner = self.lock();
            // Each answered object was recorded by `note` as it came; a delivery that could
            // not start at all answered none of them.
            let mut first_failure: HashMap<u64, PacsError> = HashMap::new();
            match &result {
                Ok(statuses) => {
                    for ((seq, _), status) in owners.iter().zip(statuses) {
                        match status {
                            InstanceStatus::Failed(f) => {
                                first_failure.entry(*seq).or_insert_with(|| f.clone());
                            }
                            _ => destination_up = true,
                        }
                    }
                }
                Err(e) => {
                    for (seq, idx) in owners {
                        if let Some(i) = inner
                            .entries
                            .get_mut(seq)
                            .and_then(|en| en.state.instances.get_mut(*idx))
                        {
                            i.apply(&InstanceStatus::Failed(e.clone()));
                        }
                        first_failure.entry(*seq).or_insert_with(|| e.clone());
                    }
                    self.metrics.delivery(e.class.as_str());
                }
            }
            self.metrics.delivery_attempts(seqs.len() as u64);
            for seq in seqs {
                let Some(e) = inner.entries.get_mut(seq) else {
                    continue;
                };
                e.sending = false;
                e.state.attempts += 1;
                e.state.last_attempt = Some(now);
                e.state.last_error = first_failure.remove(seq);
                let error_code = e.state.last_error.as_ref().map(|f| match f.code {
                    Some(c) => c.label(),
                    None => f.class.as_str().to_string(),
                });
                if e.has_pending() {
                    told.push((
                        e.record.id.clone(),
                        Outcome::Retrying,
                        e.state.instances.len(),
                        e.state.attempts,
                        error_code,
                    ));
                    let pause = backoff::delay(e.state.attempts, self.retry_max);
                    e.state.next_attempt =
                        Some(now + chrono::Duration::from_std(pause).unwrap_or_default());
                } else {
                    e.state.next_attempt = None;
                    e.state.finished = Some(now);
                    let state = e.state.study_state(false);
                    let outcomes: Vec<&'static str> = e
                        .state
                        .instances
                        .iter()
                        .map(|i| i.delivery.as_str())
                        .collect();
                    let outcome = match state {
                        StudyState::Stored if e.state.last_error.is_none() => Outcome::Stored,
                        StudyState::Stored => Outcome::StoredWithWarnings,
                        _ => Outcome::Failed,
                    };
                    told.push((
                        e.record.id.clone(),
                        outcome,
                        outcomes.len(),
                        e.state.attempts,
                        error_code,
                    ));
                    finished.push((e.record.id.clone(), state, outcomes));
                    if state == StudyState::Stored && !self.keep_files {
                        e.state.files_removed = true;
                        to_clean.push((e.dir.clone(), e.record.instances.clone()));
                    }
                }
                if let Err(err) = spool::write_state(&e.dir, &e.state, false) {
                    log::warn!(study = e.record.id.as_str(); "outbox: cannot write a study's state ({err}); it is kept in memory");
                }
                to_sync.push(e.dir.clone());
            }
            if destination_up {
                // The PACS answers again: every other study waiting for it is due now, in
                // order. The ones just tried keep their pause: what the PACS refused a moment
                // ago (out of resources) is not asked again at once.
                for (seq, e) in inner.entries.iter_mut() {
                    if !seqs.contains(seq)
                        && !e.sending
                        && e.has_pending()
                        && e.state.destination == *destination
                    {
                        e.state.next_attempt = Some(now);
                    }
                }
            }
        }
        // Syncing to the card and removing delivered files are slow on an SD card: off the
        // worker, which goes on with the next delivery. A study's state file is already
        // renamed into place, so a crash before the sync loses nothing a process crash
        // could; a power cut may at worst resend those objects under the same UIDs.
        let disk_work = move || {
            for dir in to_sync {
                if let Err(err) = spool::sync_state(&dir) {
                    log::warn!("outbox: cannot sync a study's state to the card: {err}");
                }
            }
            for (dir, instances) in to_clean {
                for i in instances {
                    let _ = std::fs::remove_file(dir.join(i.file));
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(disk_work)),
            Err(_) => disk_work(),
        }
        for (id, state, outcomes) in finished {
            self.metrics.study(match state {
                StudyState::Stored => "sent",
                StudyState::Partial => "partial",
                _ => "failed",
            });
            for outcome in &outcomes {
                self.metrics.instance(outcome);
            }
            log::info!(study = id.as_str(), images = outcomes.len(), state = state.as_str(); "study delivery finished");
        }
        {
            let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
            if destination_up {
                health.last_stored = Some(now);
            }
            let failure = match &result {
                Err(e) => Some(e.clone()),
                Ok(statuses) => statuses.iter().find_map(|s| match s {
                    InstanceStatus::Failed(f) => Some(f.clone()),
                    _ => None,
                }),
            };
            if let Some(f) = failure {
                health.last_error = Some((now, f));
            }
        }
        for (id, outcome, objects, attempts, code) in told {
            self.events
                .delivery(&id, outcome, objects, attempts, code.as_deref());
        }
        log::debug!(instances = owners.len(); "delivery attempt to {} ended", destination.describe());
        self.touch();
        self.wake.notify_one();
    }

    /// For the worker: when a study is due, a delivery to its PACS, starting from the
    /// oldest study waiting for that PACS (due or not: we are connecting anyway, and the
    /// PACS gets them in upload order), with the ones after it when they can share the
    /// delivery. Marks them sending.
    fn take_due(&self, now: DateTime<Utc>) -> Option<Vec<u64>> {
        let mut inner = self.lock();
        let longest = chrono::Duration::from_std(self.retry_max).unwrap_or_default();
        let destination = inner.entries.values().find_map(|e| {
            // Further off than any pause we set means the clock went back (a box without a
            // battery clock corrected by NTP): due now rather than in hours.
            let due = e
                .state
                .next_attempt
                .is_none_or(|t| t <= now || t - now > longest);
            (!e.sending && e.has_pending() && due).then(|| e.state.destination.clone())
        })?;
        let limit = if destination.shares_deliveries() {
            BATCH_STUDIES
        } else {
            1
        };
        let mut seqs = Vec::new();
        let mut instances = 0;
        for (seq, e) in &inner.entries {
            if seqs.len() >= limit || instances >= BATCH_INSTANCES {
                break;
            }
            if !e.sending && e.has_pending() && e.state.destination == destination {
                seqs.push(*seq);
                instances += e.state.instances.len();
            }
        }
        for seq in &seqs {
            if let Some(e) = inner.entries.get_mut(seq) {
                e.sending = true;
            }
        }
        drop(inner);
        self.touch();
        Some(seqs)
    }

    /// How long until the next study is due (`None`: nothing waits).
    fn next_due_in(&self, now: DateTime<Utc>) -> Option<Duration> {
        let inner = self.lock();
        inner
            .entries
            .values()
            .filter(|e| !e.sending && e.has_pending())
            .map(|e| {
                e.state.next_attempt.map_or(Duration::ZERO, |t| {
                    (t - now).to_std().unwrap_or_default().min(self.retry_max)
                })
            })
            .min()
    }

    /// An admin's retry: refused and waiting instances are tried again now, sent to the
    /// PACS the settings name today (the fix for a study queued for a wrong address).
    pub fn retry(&self, id: &str, current: Destination) -> Result<StudyView, OutboxError> {
        let view = {
            let mut inner = self.lock();
            let (_, e) = inner.idle_entry(id)?;
            let mut any = false;
            for i in &mut e.state.instances {
                if matches!(i.delivery, Delivery::Failed | Delivery::Pending) {
                    i.delivery = Delivery::Pending;
                    any = true;
                }
            }
            if !any || e.state.files_removed {
                return Err(OutboxError::NothingToRetry(id.to_string()));
            }
            if e.state.destination != current {
                log::info!(study = id; "outbox: retry sends the study to {} instead of {}", current.describe(), e.state.destination.describe());
                e.state.destination = current;
            }
            e.state.next_attempt = Some(Utc::now());
            e.state.finished = None;
            spool::write_state(&e.dir, &e.state, true)
                .map_err(|err| OutboxError::io(&e.dir, err))?;
            e.view()
        };
        self.touch();
        self.wake.notify_one();
        Ok(view)
    }

    /// An admin's delete: the study and its files are gone for good.
    pub fn delete(&self, id: &str) -> Result<StudyView, OutboxError> {
        let entry = {
            let mut inner = self.lock();
            let (seq, _) = inner.idle_entry(id)?;
            inner.by_id.remove(id);
            let entry = inner
                .entries
                .remove(&seq)
                .ok_or_else(|| OutboxError::NotFound(id.to_string()))?;
            if let Some(k) = &entry.record.idempotency_key {
                inner.by_key.remove(k);
            }
            entry
        };
        let view = entry.view();
        std::fs::remove_dir_all(&entry.dir).map_err(|e| OutboxError::io(&entry.dir, e))?;
        let _ = storage::sync_dir(&self.root);
        self.touch();
        Ok(view)
    }

    /// Removes delivered studies' records once their lifetime is over.
    pub fn prune(&self, now: DateTime<Utc>) {
        let expired: Vec<(u64, PathBuf)> = {
            let inner = self.lock();
            inner
                .entries
                .iter()
                .filter(|(_, e)| {
                    !e.sending
                        && e.state.files_removed
                        && e.state
                            .finished
                            .is_some_and(|f| (now - f).to_std().unwrap_or_default() > DONE_LIFETIME)
                })
                .map(|(seq, e)| (*seq, e.dir.clone()))
                .collect()
        };
        if expired.is_empty() {
            return;
        }
        let mut inner = self.lock();
        for (seq, dir) in expired {
            if let Some(e) = inner.entries.remove(&seq) {
                inner.by_id.remove(&e.record.id);
                if let Some(k) = &e.record.idempotency_key {
                    inner.by_key.remove(k);
                }
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        drop(inner);
        self.touch();
    }

    /// Queue depth, the oldest waiting study's age, and studies waiting for an admin.
    pub fn update_gauges(&self) {
        let now = Utc::now();
        let inner = self.lock();
        let mut queued = 0;
        let mut oldest = 0.0_f64;
        let mut failed = 0;
        for e in inner.entries.values() {
            match e.state.study_state(e.sending) {
                StudyState::Queued | StudyState::Sending => {
                    queued += 1;
                    let age = (now - e.record.created).num_milliseconds().max(0) as f64 / 1000.0;
                    oldest = oldest.max(age);
                }
                StudyState::Partial | StudyState::Failed => failed += 1,
                StudyState::Stored => {}
            }
        }
        self.metrics.outbox(queued, oldest, failed);
    }

    /// Whether a delivery to the PACS is in flight (a reboot waits for it).
    pub fn is_sending(&self) -> bool {
        self.lock().entries.values().any(|e| e.sending)
    }

    /// How many studies wait, since when, and how many need an admin.
    pub fn summary(&self) -> Summary {
        let inner = self.lock();
        let mut summary = Summary::default();
        for e in inner.entries.values() {
            match e.state.study_state(e.sending) {
                StudyState::Queued | StudyState::Sending => {
                    summary.queued += 1;
                    let created = e.record.created;
                    summary.oldest = Some(summary.oldest.map_or(created, |o| o.min(created)));
                }
                StudyState::Partial | StudyState::Failed => summary.failed += 1,
                StudyState::Stored => {}
            }
        }
        summary
    }

    /// Queued studies addressed to another PACS than the settings name today.
    pub fn elsewhere(&self, current: &Destination) -> usize {
        self.lock()
            .entries
            .values()
            .filter(|e| e.has_pending() && e.state.destination != *current)
            .count()
    }
}

/// The flock that makes one gateway (or one command) at a time own the outbox.
fn take_lock(root: &Path) -> Result<File, OutboxError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = root.join(spool::LOCK);
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| OutboxError::io(&path, e))?;
    // Held read-only: a handle open for writing for the process's whole life would keep
    // the data partition from being remounted read-only (an admin checking a failing card).
    let file = File::open(&path).map_err(|e| OutboxError::io(&path, e))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(OutboxError::Locked(root.to_path_buf())),
        Err(e) => Err(OutboxError::io(&path, e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dicom::uid::SECONDARY_CAPTURE;

    fn cstore(port: u16) -> Destination {
        Destination::Cstore {
            called_aet: "PACS".into(),
            host: "127.0.0.1".into(),
            port,
            calling_aet: "PHOTO_PACS".into(),
            tls: false,
        }
    }

    fn open(dir: &Path) -> Outbox {
        let metrics = Arc::new(Metrics::new("cstore"));
        Outbox::open(dir, false, Duration::from_secs(300), metrics, true)
            .unwrap()
            .0
    }

    /// Commits a study of `n` objects for `dest` and ends its first attempt with `result`.
    fn study(outbox: &Outbox, dest: Destination, key: Option<&str>, n: u32) -> StudyView {
        let id = Outbox::new_id();
        let intake = outbox.begin(&id).unwrap();
        let instances = (1..=n)
            .map(|i| {
                storage::write_new_synced(&intake.join(format!("{i:03}.dcm")), b"DICM").unwrap();
                RecordInstance {
                    index: i,
                    sop_instance_uid: format!("2.25.{i}{}", id.len()),
                    sop_class_uid: SECONDARY_CAPTURE.into(),
                    transfer_syntax: "1.2.840.10008.1.2".into(),
                    file: format!("{i:03}.dcm"),
                }
            })
            .collect();
        outbox
            .commit(Draft {
                id,
                intake_dir: intake,
                idempotency_key: key.map(str::to_string),
                study_instance_uid: "2.25.1".into(),
                series_instance_uid: "2.25.2".into(),
                destination: dest,
                instances,
            })
            .unwrap()
    }

    fn fail_all(outbox: &Outbox, v: &StudyView, e: PacsError) {
        let (dest, _, owners) = outbox.batch(&[v.seq]).unwrap();
        outbox.finish_attempt(&[v.seq], &dest, &owners, Err(e));
    }

    #[test]
    fn a_delivery_starts_from_the_oldest_study_waiting_for_that_pacs() {
        let tmp = tempfile::tempdir().unwrap();
        let outbox = open(tmp.path());
        let a = study(&outbox, cstore(1), None, 2);
        let b = study(&outbox, cstore(2), None, 1);
        let c = study(&outbox, cstore(1), None, 1);
        for v in [&a, &b, &c] {
            fail_all(&outbox, v, PacsError::transient("refused"));
        }
        // Only the newest is due, but the PACS it waits for gets its oldest study first.
        let mut inner = outbox.lock();
        let later = Utc::now() + chrono::Duration::seconds(100);
        for e in inner.entries.values_mut() {
            e.state.next_attempt = Some(later);
        }
        inner.entries.get_mut(&c.seq).unwrap().state.next_attempt = Some(Utc::now());
        drop(inner);
        assert_eq!(outbox.take_due(Utc::now()), Some(vec![a.seq, c.seq]));
        assert_eq!(
            outbox.take_due(Utc::now()),
            None,
            "b is not due, a and c are sending"
        );
    }

    #[test]
    fn a_clock_that_went_back_does_not_hold_a_study_for_hours() {
        let tmp = tempfile::tempdir().unwrap();
        let outbox = open(tmp.path());
        let a = study(&outbox, cstore(1), None, 1);
        fail_all(&outbox, &a, PacsError::transient("refused"));
        let far = Utc::now() + chrono::Duration::hours(6);
        outbox
            .lock()
            .entries
            .get_mut(&a.seq)
            .unwrap()
            .state
            .next_attempt = Some(far);
        assert_eq!(outbox.take_due(Utc::now()), Some(vec![a.seq]));
    }

    #[test]
    fn a_refusal_waits_for_the_admin_whose_retry_goes_to_the_pacs_set_now() {
        let tmp = tempfile::tempdir().unwrap();
        let outbox = open(tmp.path());
        let a = study(&outbox, cstore(1), Some("key-0001"), 2);
        fail_all(
            &outbox,
            &a,
            PacsError::permanent("no").with_code(crate::pacs::PacsCode::Dimse(0xA900)),
        );
        let v = outbox.view(&a.id).unwrap();
        assert_eq!(v.state, StudyState::Failed);
        assert_eq!(outbox.take_due(Utc::now()), None, "never retried by itself");
        assert_eq!(
            outbox.find_key("key-0001").map(|v| v.id),
            Some(a.id.clone())
        );

        let v = outbox.retry(&a.id, cstore(9)).unwrap();
        assert_eq!(v.state, StudyState::Queued);
        assert_eq!(v.destination, cstore(9));
        assert_eq!(v.made_for, cstore(1));
        assert_eq!(outbox.take_due(Utc::now()), Some(vec![a.seq]));
        assert!(matches!(
            outbox.retry(&a.id, cstore(9)),
            Err(OutboxError::Busy(_))
        ));
        assert!(matches!(outbox.delete(&a.id), Err(OutboxError::Busy(_))));
        outbox.finish_without_attempt(&[a.seq]);
        let dir = tmp.path().join(&a.id);
        assert!(dir.is_dir());
        outbox.delete(&a.id).unwrap();
        assert!(!dir.exists());
        assert!(outbox.find_key("key-0001").is_none());
        assert!(matches!(
            outbox.retry(&a.id, cstore(9)),
            Err(OutboxError::NotFound(_))
        ));
    }

    #[test]
    fn a_stored_study_loses_its_objects_and_keeps_its_record_and_state() {
        let tmp = tempfile::tempdir().unwrap();
        let outbox = open(tmp.path());
        let a = study(&outbox, cstore(1), None, 2);
        let (dest, _, owners) = outbox.batch(&[a.seq]).unwrap();
        // As a delivery does: each answer recorded as it comes, then the attempt's end.
        let statuses = vec![
            InstanceStatus::Success,
            InstanceStatus::Warning("coerced".into()),
        ];
        for ((seq, idx), status) in owners.iter().zip(&statuses) {
            outbox.note(*seq, *idx, status);
        }
        outbox.finish_attempt(&[a.seq], &dest, &owners, Ok(statuses));
        let v = outbox.view(&a.id).unwrap();
        assert_eq!(v.state, StudyState::Stored);
        assert!(v.files_removed);
        let dir = tmp.path().join(&a.id);
        assert!(!dir.join("001.dcm").exists() && dir.join(spool::RECORD).is_file());
        assert!(matches!(
            outbox.retry(&a.id, cstore(1)),
            Err(OutboxError::NothingToRetry(_))
        ));
        // A day later the record goes too.
        outbox.prune(Utc::now() + chrono::Duration::hours(25));
        assert!(outbox.view(&a.id).is_none() && !dir.exists());
    }

    #[test]
    fn a_second_process_cannot_take_the_outbox() {
        let tmp = tempfile::tempdir().unwrap();
        let _first = open(tmp.path());
        let metrics = Arc::new(Metrics::new("cstore"));
        assert!(matches!(
            Outbox::open(
                tmp.path(),
                false,
                Duration::from_secs(1),
                metrics.clone(),
                true
            ),
            Err(OutboxError::Locked(_))
        ));
        assert!(Outbox::open(tmp.path(), false, Duration::from_secs(1), metrics, false).is_ok());
    }

    #[test]
    fn patient_ids_are_masked() {
        assert_eq!(mask("A123456"), "A12***");
        assert_eq!(mask("AB"), "A***");
        assert_eq!(mask("X"), "***");
        assert_eq!(mask("王大明醫院"), "王大明***");
    }
}
