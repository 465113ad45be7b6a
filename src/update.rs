//! Updates of the box's root file system: a signed RAUC bundle uploaded or downloaded,
//! judged, installed into the other slot over D-Bus, then a reboot when the admin says.

pub mod rauc;
pub mod verity;
pub mod version;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Local, NaiveTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::config::EnvConfig;
use crate::telemetry::Events;
pub use rauc::{Bus, Info, Slot};

/// The file a root path unit on the image watches: when it appears, the box reboots.
pub const REBOOT_REQUEST: &str = "reboot-request";
/// The pending bundle; RAUC wants the `.raucb` suffix.
const PENDING: &str = "pending.raucb";
const PENDING_INFO: &str = "pending.json";
const STATE: &str = "state.json";
/// The box's RAUC pre-install handler refuses a downgrade unless this file exists.
pub const ALLOW_DOWNGRADE_FLAG: &str = "/run/photo-pacs/allow-downgrade";
/// How often the install's progress is read, and the reboot plan looked at.
const TICK: Duration = Duration::from_secs(1);
/// An install that runs longer than this is given up on (a 1 GB bundle to an SD card
/// takes minutes, not hours).
const INSTALL_LIMIT: Duration = Duration::from_secs(3 * 3600);
/// A download's whole time, and its redirects.
const DOWNLOAD_LIMIT: Duration = Duration::from_secs(3600);
const MAX_REDIRECTS: usize = 3;
/// Free space is measured again after this many bytes of an upload.
const SPACE_CHECK_EVERY: u64 = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// No release file or RAUC configuration: a laptop, a container, the demo.
    #[error("updates are not available on this machine: {0}")]
    Unavailable(String),
    #[error("the update file is larger than {limit_mb} MB (PHOTO_PACS_UPDATE_MAX_MB)")]
    TooLarge { limit_mb: u64 },
    #[error(
        "not enough free space for this update ({} MB free; photos waiting to be sent keep {} MB)",
        available / (1024 * 1024),
        guard / (1024 * 1024)
    )]
    Full { available: u64, guard: u64 },
    #[error(
        "the file is not a signed Photo PACS update, or it was changed after it was signed ({0})"
    )]
    Invalid(String),
    #[error(
        "this update is for \"{bundle}\" but this box is \"{here}\": choose the update made for this box"
    )]
    Incompatible { bundle: String, here: String },
    #[error(
        "this update ({bundle}) is older than the version running now ({running}); an older version can only be installed from the box's console with --allow-downgrade"
    )]
    Downgrade { bundle: String, running: String },
    #[error("{0}")]
    Url(String),
    #[error("the download failed: {0}")]
    Download(String),
    #[error("no update is waiting to be installed: upload one first")]
    NothingPending,
    #[error("{0}")]
    Busy(&'static str),
    #[error("{0}")]
    RebootTime(String),
    /// RAUC's service could not be asked, or refused.
    #[error("RAUC: {0}")]
    Rauc(#[from] rauc::RaucError),
    #[error("the update failed: {0}")]
    InstallFailed(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl UpdateError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> UpdateError {
        let what = what.into();
        move |source| UpdateError::Io { what, source }
    }
}

/// Where things are, from the environment.
#[derive(Clone, Debug)]
pub struct Config {
    /// `<data>/updates`: the pending bundle and the install record.
    pub dir: PathBuf,
    /// Beside settings.ini: where `reboot-request` goes.
    pub request_dir: PathBuf,
    pub rauc_conf: PathBuf,
    pub release_file: PathBuf,
    pub bus: Bus,
    pub max_bytes: u64,
    /// The outbox's free-space guard: an update never takes the room photos need.
    pub min_free: u64,
    /// This boot's ID: tells whether the box has rebooted since an install.
    pub boot_id: String,
}

impl Config {
    pub fn from_env(env: &EnvConfig) -> Self {
        let request_dir = env
            .settings_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Config {
            dir: request_dir.join("updates"),
            request_dir,
            rauc_conf: env.rauc_conf.clone(),
            release_file: env.release_file.clone(),
            bus: Bus {
                address: env.dbus_address.clone(),
            },
            max_bytes: env.update_max_bytes,
            min_free: env.min_free_bytes,
            boot_id: env.boot_id.clone().unwrap_or_else(kernel_boot_id),
        }
    }
}

/// What the running root file system says about itself (`/etc/photo-pacs-release`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    pub version: String,
    pub compatible: String,
}

/// Shell-style `KEY=value` lines, quotes optional.
pub fn parse_release(text: &str) -> Option<Release> {
    let mut version = None;
    let mut compatible = None;
    for line in text.lines() {
        let Some((k, v)) = line.trim().split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v)
            .to_string();
        match k.trim() {
            "VERSION" => version = Some(v),
            "COMPATIBLE" => compatible = Some(v),
            _ => {}
        }
    }
    Some(Release {
        version: version.filter(|v| !v.is_empty())?,
        compatible: compatible.unwrap_or_default(),
    })
}

/// What RAUC's `system.conf` says: the compatible it installs, and its keyring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct System {
    pub compatible: String,
    pub keyring: Option<PathBuf>,
}

pub fn parse_system_conf(text: &str) -> Result<System, String> {
    let ini = ini::Ini::load_from_str(text).map_err(|e| format!("line {}: {}", e.line, e.msg))?;
    let compatible = ini
        .get_from(Some("system"), "compatible")
        .map(str::to_string)
        .ok_or("no compatible in its [system] section")?;
    let keyring = ini.get_from(Some("keyring"), "path").map(PathBuf::from);
    Ok(System {
        compatible,
        keyring,
    })
}

/// A bundle waiting to be installed.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    pub version: String,
    pub compatible: String,
    pub signer: String,
    pub format: String,
    pub size: u64,
    pub uploaded_at: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ResultKind {
    Installed,
    RolledBack,
    Failed,
}

/// How the last update ended, as the box found out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastResult {
    pub kind: ResultKind,
    pub version: String,
    pub slot: String,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An install RAUC finished, waiting for the reboot that tells whether it took.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Installed {
    pub version: String,
    /// The bootname of the slot written.
    pub slot: String,
    /// The slot running when it was written.
    pub from_slot: String,
    pub at: DateTime<Utc>,
    /// The kernel's boot ID then: the same ID means no reboot yet.
    pub boot_id: String,
}

/// `updates/state.json`: kept across reboots and readable by the previous version (only
/// fields are added, never renamed), so a rollback still tells what happened.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    #[serde(default)]
    pub installed: Option<Installed>,
    #[serde(default)]
    pub last_result: Option<LastResult>,
}

/// What became of an install after a reboot.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No reboot yet, or the new slot runs but is not marked good yet.
    Waiting,
    Installed,
    /// Back on another slot: the new one did not start (or was marked bad).
    RolledBack {
        slot_bad: bool,
    },
}

/// The state machine after a reboot: the new slot counts as installed once it is booted
/// *and* marked good (the image marks it only after the gateway reported ready), so a
/// version that starts but never becomes ready does not claim success before RAUC's
/// bootloader takes the box back.
pub fn judge(installed: &Installed, boot_id: &str, booted: &str, slots: &[Slot]) -> Verdict {
    if boot_id == installed.boot_id {
        return Verdict::Waiting;
    }
    let target = slots.iter().find(|s| s.bootname == installed.slot);
    if booted == installed.slot {
        if target.is_some_and(|s| s.boot_status == "good") {
            Verdict::Installed
        } else {
            Verdict::Waiting
        }
    } else {
        Verdict::RolledBack {
            slot_bad: target.is_some_and(|s| s.boot_status == "bad"),
        }
    }
}

/// What the service is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Operation {
    Idle,
    Checking,
    Installing,
}

/// A reboot the admin asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reboot {
    /// `now` or `HH:MM` as asked.
    pub requested: String,
    #[serde(serialize_with = "rfc3339")]
    pub scheduled_at: DateTime<Utc>,
    /// Due, but a delivery to the PACS is in flight.
    pub waiting_for_outbox: bool,
}

fn rfc3339<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// `now`, or the next `HH:MM` of the box's clock (today if still ahead, else tomorrow).
pub fn reboot_time(at: &str, now: DateTime<Local>) -> Result<DateTime<Utc>, UpdateError> {
    if at == "now" {
        return Ok(now.with_timezone(&Utc));
    }
    let time = NaiveTime::parse_from_str(at, "%H:%M")
        .ok()
        .filter(|_| at.len() == 5)
        .ok_or_else(|| {
            UpdateError::RebootTime(format!(
                "at must be \"now\" or a time of day as HH:MM (box time), not {at:?}"
            ))
        })?;
    let today = now.date_naive().and_time(time);
    let mut when = today;
    if when <= now.naive_local() {
        when += chrono::Duration::days(1);
    }
    // A time skipped by a clock change is taken an hour later.
    let local = when
        .and_local_timezone(Local)
        .earliest()
        .or_else(|| {
            (when + chrono::Duration::hours(1))
                .and_local_timezone(Local)
                .earliest()
        })
        .ok_or_else(|| UpdateError::RebootTime(format!("{at} does not exist on this clock")))?;
    Ok(local.with_timezone(&Utc))
}

#[derive(Default)]
struct State {
    pending: Option<Pending>,
    operation: Option<Operation>,
    percent: i64,
    message: String,
    last_error: Option<String>,
    reboot: Option<Reboot>,
    record: Record,
}

/// The update card's view.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct View {
    pub available: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub version: Option<String>,
    pub compatible: Option<String>,
    pub booted_slot: Option<String>,
    pub slots: Vec<Slot>,
    pub pending: Option<Pending>,
    pub operation: Operation,
    pub progress: Progress,
    pub last_error: Option<String>,
    pub reboot: Option<Reboot>,
    /// Installed into the other slot: a reboot starts it.
    pub awaiting_reboot: bool,
    pub last_result: Option<LastResult>,
    pub max_bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Progress {
    pub percent: i64,
    pub message: String,
}

/// The update service: one per gateway (and one for a CLI run).
pub struct Updates {
    cfg: Config,
    state: Mutex<State>,
    events: Arc<Events>,
}

impl Updates {
    /// Reads what a previous run left in the updates directory; never fails (an unreadable
    /// record is set aside as if there were none).
    pub fn new(cfg: Config, events: Arc<Events>) -> Self {
        let mut state = State::default();
        if let Ok(text) = std::fs::read(cfg.dir.join(STATE)) {
            match serde_json::from_slice::<Record>(&text) {
                Ok(r) => state.record = r,
                Err(e) => log::warn!("updates: the install record cannot be read ({e}); ignored"),
            }
        }
        if cfg.dir.join(PENDING).is_file()
            && let Ok(text) = std::fs::read(cfg.dir.join(PENDING_INFO))
            && let Ok(p) = serde_json::from_slice::<Pending>(&text)
        {
            state.pending = Some(p);
        }
        Updates {
            cfg,
            state: Mutex::new(state),
            events,
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The release and RAUC's system: both must exist for updates to be possible here.
    pub fn here(&self) -> Result<(Release, System), UpdateError> {
        let text = std::fs::read_to_string(&self.cfg.release_file).map_err(|e| {
            UpdateError::Unavailable(format!(
                "{} cannot be read ({e}): this machine does not run the Photo PACS SD-card image (PHOTO_PACS_RELEASE_FILE)",
                self.cfg.release_file.display()
            ))
        })?;
        let release = parse_release(&text).ok_or_else(|| {
            UpdateError::Unavailable(format!(
                "{} has no VERSION line",
                self.cfg.release_file.display()
            ))
        })?;
        let conf = std::fs::read_to_string(&self.cfg.rauc_conf).map_err(|e| {
            UpdateError::Unavailable(format!(
                "RAUC's configuration {} cannot be read ({e}) (PHOTO_PACS_RAUC_CONF)",
                self.cfg.rauc_conf.display()
            ))
        })?;
        let system = parse_system_conf(&conf).map_err(|e| {
            UpdateError::Unavailable(format!("{}: {e}", self.cfg.rauc_conf.display()))
        })?;
        Ok((release, system))
    }

    /// The card's view; asks RAUC for the slots when updates are available.
    pub async fn view(&self) -> View {
        let here = self.here();
        let (slots, booted) = match &here {
            Ok(_) => match self.slots().await {
                Ok(s) => s,
                Err(e) => {
                    log::debug!("updates: slots unknown: {e}");
                    (Vec::new(), None)
                }
            },
            Err(_) => (Vec::new(), None),
        };
        let st = self.lock();
        let (available, reason, version, compatible) = match here {
            Ok((r, s)) => (true, None, Some(r.version), Some(s.compatible)),
            Err(e) => (false, Some(e.to_string()), None, None),
        };
        View {
            available,
            reason,
            version,
            compatible,
            booted_slot: booted,
            slots,
            pending: st.pending.clone(),
            operation: st.operation.unwrap_or(Operation::Idle),
            progress: Progress {
                percent: st.percent,
                message: st.message.clone(),
            },
            last_error: st.last_error.clone(),
            reboot: st.reboot.clone(),
            awaiting_reboot: st.record.installed.is_some(),
            last_result: st.record.last_result.clone(),
            max_bytes: self.cfg.max_bytes,
        }
    }

    /// The root slots and the booted one's bootname.
    pub async fn slots(&self) -> Result<(Vec<Slot>, Option<String>), UpdateError> {
        let slots = self.cfg.bus.slots().await?;
        let booted = match self.cfg.bus.boot_slot().await {
            Ok(b) if !b.is_empty() => Some(b),
            _ => slots
                .iter()
                .find(|s| s.state == "booted")
                .map(|s| s.bootname.clone()),
        };
        Ok((slots, booted))
    }

    fn updates_dir(&self) -> Result<PathBuf, UpdateError> {
        crate::storage::create_private_dir(&self.cfg.dir).map_err(UpdateError::io(format!(
            "cannot create {}",
            self.cfg.dir.display()
        )))?;
        // RAUC runs in its own mount namespace and working directory: an absolute path.
        self.cfg.dir.canonicalize().map_err(UpdateError::io(format!(
            "cannot resolve {}",
            self.cfg.dir.display()
        )))
    }

    /// Starts receiving a bundle; `declared` is the announced size, if any.
    pub async fn begin_upload(&self, declared: Option<u64>) -> Result<Upload, UpdateError> {
        self.here()?;
        if let Some(n) = declared {
            if n > self.cfg.max_bytes {
                return Err(self.too_large());
            }
            self.check_space(n)?;
        }
        let dir = self.updates_dir()?;
        let path = dir.join(format!("incoming-{}.part", uuid::Uuid::new_v4().simple()));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(UpdateError::io("cannot create the update file"))?;
        Ok(Upload {
            path: Some(path),
            file: Some(file),
            written: 0,
            checked_at: 0,
            max: self.cfg.max_bytes,
            limit_mb: self.cfg.max_bytes / (1024 * 1024),
            min_free: self.cfg.min_free,
            dir,
        })
    }

    fn too_large(&self) -> UpdateError {
        UpdateError::TooLarge {
            limit_mb: self.cfg.max_bytes / (1024 * 1024),
        }
    }

    fn check_space(&self, more: u64) -> Result<(), UpdateError> {
        let probe = if self.cfg.dir.exists() {
            self.cfg.dir.clone()
        } else {
            self.cfg.request_dir.clone()
        };
        space_for(&probe, more, self.cfg.min_free)
    }

    /// Judges a received bundle; a good one becomes the pending bundle (replacing any
    /// other), a refused one is deleted.
    pub async fn accept(
        &self,
        mut upload: Upload,
        allow_downgrade: bool,
    ) -> Result<Pending, UpdateError> {
        if let Some(mut f) = upload.file.take() {
            f.flush()
                .await
                .map_err(UpdateError::io("cannot write the update file"))?;
            f.sync_all()
                .await
                .map_err(UpdateError::io("cannot write the update file"))?;
        }
        let path = upload.path.clone().unwrap_or_default();
        {
            let mut st = self.lock();
            if st.operation == Some(Operation::Installing) {
                return Err(UpdateError::Busy(
                    "an update is being installed: wait until it has finished",
                ));
            }
            st.operation = Some(Operation::Checking);
        }
        let judged = self.inspect(&path, allow_downgrade).await;
        let mut st = self.lock();
        if st.operation == Some(Operation::Checking) {
            st.operation = None;
        }
        let info = judged?;
        let pending = Pending {
            version: info.version,
            compatible: info.compatible,
            signer: info.signer,
            format: info.format,
            size: upload.written,
            uploaded_at: Utc::now(),
        };
        let target = upload.dir.join(PENDING);
        std::fs::rename(&path, &target).map_err(UpdateError::io("cannot keep the update file"))?;
        upload.path = None;
        let json = serde_json::to_vec_pretty(&pending).unwrap_or_default();
        crate::storage::replace(&upload.dir.join(PENDING_INFO), &json, 0o600, true)
            .map_err(UpdateError::io("cannot record the update file"))?;
        // Not the bundle itself: RAUC takes a bundle owned by root (or its caller) as it is.
        self.give_to_gateway(&[&upload.dir, &upload.dir.join(PENDING_INFO)]);
        st.pending = Some(pending.clone());
        st.last_error = None;
        log::info!(version = pending.version.as_str(); "update: bundle accepted");
        Ok(pending)
    }

    /// `rauc info`, the payload's hash tree, then this box's compatible and version.
    pub async fn inspect(&self, path: &Path, allow_downgrade: bool) -> Result<Info, UpdateError> {
        let (release, system) = self.here()?;
        let info = match rauc::info(&self.cfg.rauc_conf, system.keyring.as_deref(), path).await {
            Ok(info) => info,
            Err(rauc::Refusal::NotSigned(why)) => return Err(UpdateError::Invalid(why)),
            Err(rauc::Refusal::Other(e)) => return Err(e.into()),
        };
        if info.format != "verity" {
            return Err(UpdateError::Invalid(format!(
                "its format is {}; this box installs only verity bundles",
                info.format
            )));
        }
        let Some(manifest) = info.verity.clone() else {
            return Err(UpdateError::Invalid(
                "no verity hash in its manifest".into(),
            ));
        };
        let file = path.to_path_buf();
        tokio::task::spawn_blocking(move || verity::check(&file, &manifest))
            .await
            .map_err(|e| UpdateError::Invalid(e.to_string()))?
            .map_err(|e| UpdateError::Invalid(e.to_string()))?;
        if info.compatible != system.compatible {
            return Err(UpdateError::Incompatible {
                bundle: info.compatible,
                here: system.compatible,
            });
        }
        if !allow_downgrade && version::compare(&info.version, &release.version).is_lt() {
            return Err(UpdateError::Downgrade {
                bundle: info.version,
                running: release.version,
            });
        }
        Ok(info)
    }

    /// Downloads an `https://` bundle (size-bounded, few redirects), then judges it as an upload.
    pub async fn download(&self, url: &str, allow_downgrade: bool) -> Result<Pending, UpdateError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| UpdateError::Url(format!("url is not a valid address: {e}")))?;
        if parsed.scheme() != "https" {
            return Err(UpdateError::Url(
                "url must start with https:// (an update is never fetched unencrypted)".into(),
            ));
        }
        self.here()?;
        let client = download_client()?;
        let mut resp = client
            .get(parsed)
            .send()
            .await
            .map_err(|e| UpdateError::Download(without_url(&e)))?;
        if !resp.status().is_success() {
            return Err(UpdateError::Download(format!(
                "the server answered {}",
                resp.status()
            )));
        }
        let mut upload = self.begin_upload(resp.content_length()).await?;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| UpdateError::Download(without_url(&e)))?
        {
            upload.write(&chunk).await?;
        }
        self.accept(upload, allow_downgrade).await
    }

    /// Forgets the pending bundle; `false` if there was none.
    pub fn discard(&self) -> Result<bool, UpdateError> {
        let mut st = self.lock();
        if st.operation == Some(Operation::Installing) {
            return Err(UpdateError::Busy(
                "an update is being installed: wait until it has finished",
            ));
        }
        let had = st.pending.take().is_some();
        for name in [PENDING, PENDING_INFO] {
            match std::fs::remove_file(self.cfg.dir.join(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(UpdateError::io("cannot delete the update file")(e)),
            }
        }
        Ok(had)
    }

    /// Claims the install: refuses when nothing is pending or one runs already.
    fn claim(&self) -> Result<(PathBuf, Pending), UpdateError> {
        self.here()?;
        let mut st = self.lock();
        if matches!(
            st.operation,
            Some(Operation::Installing | Operation::Checking)
        ) {
            return Err(UpdateError::Busy("an update is already being installed"));
        }
        let pending = st.pending.clone().ok_or(UpdateError::NothingPending)?;
        st.operation = Some(Operation::Installing);
        st.percent = 0;
        st.message = "Starting".into();
        st.last_error = None;
        drop(st);
        Ok((self.updates_dir()?.join(PENDING), pending))
    }

    /// Starts the install in the background (the page follows it with GET).
    pub fn start_install(self: &Arc<Self>) -> Result<Pending, UpdateError> {
        let (path, pending) = self.claim()?;
        let me = self.clone();
        let p = pending.clone();
        tokio::spawn(async move {
            let _ = me.install_claimed(&path, &p, |_| {}).await;
        });
        Ok(pending)
    }

    /// Installs the pending bundle and waits for the end (the CLI), reporting progress.
    pub async fn install(
        &self,
        on_progress: impl FnMut(&rauc::Properties),
    ) -> Result<LastResult, UpdateError> {
        let (path, pending) = self.claim()?;
        self.install_claimed(&path, &pending, on_progress).await
    }

    async fn install_claimed(
        &self,
        path: &Path,
        pending: &Pending,
        mut on_progress: impl FnMut(&rauc::Properties),
    ) -> Result<LastResult, UpdateError> {
        let from = self.slots().await.ok().and_then(|(_, b)| b);
        let outcome = self.drive(path, &mut on_progress).await;
        let mut st = self.lock();
        st.operation = None;
        let now = Utc::now();
        match outcome {
            Ok(target) => {
                let slot = target.unwrap_or_default();
                st.percent = 100;
                st.message = "Installed: reboot to start it".into();
                st.record.installed = Some(Installed {
                    version: pending.version.clone(),
                    slot: slot.clone(),
                    from_slot: from.unwrap_or_default(),
                    at: now,
                    boot_id: self.cfg.boot_id.clone(),
                });
                st.pending = None;
                self.save(&st.record);
                drop(st);
                for name in [PENDING, PENDING_INFO] {
                    let _ = std::fs::remove_file(self.cfg.dir.join(name));
                }
                self.events.update_written(&pending.version, &slot);
                log::info!(version = pending.version.as_str(), slot = slot.as_str(); "update: installed into the other slot; a reboot starts it");
                Ok(LastResult {
                    kind: ResultKind::Installed,
                    version: pending.version.clone(),
                    slot,
                    at: now,
                    message: None,
                })
            }
            Err(e) => {
                let message = e.to_string();
                st.last_error = Some(message.clone());
                st.message = "Installing failed".into();
                let result = LastResult {
                    kind: ResultKind::Failed,
                    version: pending.version.clone(),
                    slot: String::new(),
                    at: now,
                    message: Some(message.clone()),
                };
                st.record.last_result = Some(result);
                self.save(&st.record);
                drop(st);
                self.events.update_failed(&pending.version, &message);
                log::warn!(version = pending.version.as_str(); "update: install failed: {message}");
                Err(e)
            }
        }
    }

    /// InstallBundle, then Progress every second until RAUC is idle again; the slot written
    /// (the one now holding this bundle that is not booted).
    async fn drive(
        &self,
        path: &Path,
        on_progress: &mut impl FnMut(&rauc::Properties),
    ) -> Result<Option<String>, UpdateError> {
        let bus = &self.cfg.bus;
        bus.install(path).await?;
        let started = tokio::time::Instant::now();
        let mut seen_running = false;
        let props = loop {
            tokio::time::sleep(TICK).await;
            let p = bus.properties().await?;
            on_progress(&p);
            {
                let mut st = self.lock();
                st.percent = p.percent;
                st.message = p.message.clone();
            }
            if p.operation != "idle" {
                seen_running = true;
            } else if seen_running || started.elapsed() > Duration::from_secs(5) {
                break p;
            }
            if started.elapsed() > INSTALL_LIMIT {
                return Err(UpdateError::InstallFailed(
                    "RAUC did not finish within 3 hours".into(),
                ));
            }
        };
        if !props.last_error.is_empty() {
            return Err(UpdateError::InstallFailed(props.last_error));
        }
        let (slots, booted) = self.slots().await?;
        Ok(slots
            .iter()
            .find(|s| Some(&s.bootname) != booted.as_ref() && s.state != "booted")
            .map(|s| s.bootname.clone()))
    }

    fn save(&self, record: &Record) {
        let json = serde_json::to_vec_pretty(record).unwrap_or_default();
        let path = self.cfg.dir.join(STATE);
        if let Err(e) = crate::storage::create_private_dir(&self.cfg.dir)
            .and_then(|()| crate::storage::replace(&path, &json, 0o600, true))
        {
            log::warn!("updates: cannot write the install record: {e}");
        }
        self.give_to_gateway(&[&self.cfg.dir, &path]);
    }

    /// The CLI runs as root: what it writes in the data directory goes to the directory's
    /// owner (the gateway's user), or the gateway could not read its own record.
    fn give_to_gateway(&self, paths: &[&Path]) {
        use std::os::unix::fs::MetadataExt;
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let Ok(meta) = std::fs::metadata(&self.cfg.request_dir) else {
            return;
        };
        for p in paths {
            let _ = rustix::fs::chown(
                *p,
                Some(rustix::fs::Uid::from_raw(meta.uid())),
                Some(rustix::fs::Gid::from_raw(meta.gid())),
            );
        }
    }

    /// After a reboot: was the new slot started, or did the box go back?
    pub async fn reconcile(&self) {
        let Some(installed) = self.lock().record.installed.clone() else {
            return;
        };
        let Ok((slots, Some(booted))) = self.slots().await else {
            return;
        };
        let verdict = judge(&installed, &self.cfg.boot_id, &booted, &slots);
        let now = Utc::now();
        let result = match verdict {
            Verdict::Waiting => return,
            Verdict::Installed => {
                self.events
                    .update_installed(&installed.version, &installed.slot);
                LastResult {
                    kind: ResultKind::Installed,
                    version: installed.version.clone(),
                    slot: installed.slot.clone(),
                    at: now,
                    message: None,
                }
            }
            Verdict::RolledBack { slot_bad } => {
                self.events
                    .update_rolled_back(&installed.version, &installed.slot, &booted);
                LastResult {
                    kind: ResultKind::RolledBack,
                    version: installed.version.clone(),
                    slot: installed.slot.clone(),
                    at: now,
                    message: Some(format!(
                        "{} in slot {} did not start{}; running slot {booted} again",
                        installed.version,
                        installed.slot,
                        if slot_bad { " and was marked bad" } else { "" }
                    )),
                }
            }
        };
        let mut st = self.lock();
        st.record.installed = None;
        st.record.last_result = Some(result);
        self.save(&st.record);
    }

    /// Plans a reboot (`now` or `HH:MM`), replacing any other plan.
    pub fn schedule_reboot(&self, at: &str) -> Result<Reboot, UpdateError> {
        self.here()?;
        let when = reboot_time(at, Local::now())?;
        let plan = Reboot {
            requested: at.to_string(),
            scheduled_at: when,
            waiting_for_outbox: false,
        };
        let mut st = self.lock();
        if st.operation == Some(Operation::Installing) {
            return Err(UpdateError::Busy(
                "an update is being installed: reboot after it has finished",
            ));
        }
        st.reboot = Some(plan.clone());
        Ok(plan)
    }

    /// `true` if a plan was cancelled.
    pub fn cancel_reboot(&self) -> bool {
        self.lock().reboot.take().is_some()
    }

    /// One look at the reboot plan: when due and no delivery is in flight, writes the
    /// request. Returns whether it was written.
    pub fn tick_reboot(&self, now: DateTime<Utc>, outbox_sending: bool) -> bool {
        let mut st = self.lock();
        let installing = st.operation == Some(Operation::Installing);
        let Some(plan) = st.reboot.as_mut() else {
            return false;
        };
        if now < plan.scheduled_at || installing {
            return false;
        }
        if outbox_sending {
            plan.waiting_for_outbox = true;
            return false;
        }
        match write_reboot_request(&self.cfg.request_dir) {
            Ok(()) => {
                st.reboot = None;
                drop(st);
                self.events.update_reboot();
                log::info!("update: reboot requested");
                true
            }
            Err(e) => {
                log::warn!("update: cannot write the reboot request: {e}");
                false
            }
        }
    }

    /// The gateway's background part: the reboot plan every second, and after a restart
    /// the verdict on the last install (looked at until it is known).
    pub async fn run(self: Arc<Self>, sending: impl Fn() -> bool + Send + 'static) {
        let mut ticks: u64 = 0;
        loop {
            if ticks.is_multiple_of(10)
                && self.lock().record.installed.is_some()
                && self.here().is_ok()
            {
                self.reconcile().await;
            }
            self.tick_reboot(Utc::now(), sending());
            ticks += 1;
            tokio::time::sleep(TICK).await;
        }
    }
}

/// The empty file the image's path unit reboots on, written whole (temp file, rename). The
/// image removes one left from an earlier boot before it starts watching, so a request
/// that outlived a power cut does not reboot the box again at its next start.
pub fn write_reboot_request(dir: &Path) -> std::io::Result<()> {
    crate::config::write_atomically_with_mode(&dir.join(REBOOT_REQUEST), b"", 0o600)
}

/// The kernel's ID of this boot; empty where there is none. Under the unit, whose sandbox
/// (ProcSubset=pid) hides /proc/sys, PHOTO_PACS_BOOT_ID gives it instead.
fn kernel_boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `more` bytes still fit above the outbox's guard on the file system holding `dir`.
fn space_for(dir: &Path, more: u64, guard: u64) -> Result<(), UpdateError> {
    // A path we cannot measure is not a reason to refuse: the write will tell.
    let Ok(space) = crate::outbox::space::of(dir) else {
        return Ok(());
    };
    let guard = guard.max(space.total / 10);
    if space.available.saturating_sub(more) < guard {
        return Err(UpdateError::Full {
            available: space.available,
            guard,
        });
    }
    Ok(())
}

/// A bundle being received; deleted if dropped before [`Updates::accept`] took it.
pub struct Upload {
    path: Option<PathBuf>,
    file: Option<tokio::fs::File>,
    written: u64,
    checked_at: u64,
    max: u64,
    limit_mb: u64,
    min_free: u64,
    dir: PathBuf,
}

impl Upload {
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), UpdateError> {
        let n = chunk.len() as u64;
        if self.written + n > self.max {
            return Err(UpdateError::TooLarge {
                limit_mb: self.limit_mb,
            });
        }
        if self.written + n - self.checked_at >= SPACE_CHECK_EVERY || self.checked_at == 0 {
            space_for(&self.dir, n.max(SPACE_CHECK_EVERY), self.min_free)?;
            self.checked_at = self.written + n;
        }
        let Some(file) = self.file.as_mut() else {
            return Err(UpdateError::Busy("the update file is already closed"));
        };
        file.write_all(chunk)
            .await
            .map_err(UpdateError::io("cannot write the update file"))?;
        self.written += n;
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The gateway's reqwest (rustls with ring), bounded: total time and a few redirects,
/// never from https to http.
fn download_client() -> Result<reqwest::Client, UpdateError> {
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else if attempt.url().scheme() != "https" {
            attempt.error("a redirect left https")
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .timeout(DOWNLOAD_LIMIT)
        .connect_timeout(Duration::from_secs(30))
        .redirect(policy)
        .build()
        .map_err(|e| UpdateError::Download(format!("HTTP client set-up failed: {e}")))
}

/// reqwest's message without the URL (it may carry a token in its query).
fn without_url(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    if let Some(url) = e.url() {
        msg = msg.replace(url.as_str(), "the update address");
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(bootname: &str, state: &str, boot_status: &str) -> Slot {
        Slot {
            name: format!("rootfs.{bootname}"),
            class: "rootfs".into(),
            bootname: bootname.into(),
            state: state.into(),
            boot_status: boot_status.into(),
            ..Slot::default()
        }
    }

    fn installed() -> Installed {
        Installed {
            version: "0.2.0".into(),
            slot: "B".into(),
            from_slot: "A".into(),
            at: Utc::now(),
            boot_id: "boot-1".into(),
        }
    }

    #[test]
    fn an_install_is_judged_only_after_a_reboot() {
        let i = installed();
        let slots = [slot("A", "booted", "good"), slot("B", "inactive", "good")];
        assert_eq!(judge(&i, "boot-1", "A", &slots), Verdict::Waiting);
    }

    #[test]
    fn the_new_slot_counts_once_it_is_booted_and_marked_good() {
        let i = installed();
        let not_yet = [slot("A", "inactive", "good"), slot("B", "booted", "bad")];
        assert_eq!(judge(&i, "boot-2", "B", &not_yet), Verdict::Waiting);
        let good = [slot("A", "inactive", "good"), slot("B", "booted", "good")];
        assert_eq!(judge(&i, "boot-2", "B", &good), Verdict::Installed);
    }

    #[test]
    fn back_on_the_old_slot_is_a_rollback() {
        let i = installed();
        let bad = [slot("A", "booted", "good"), slot("B", "inactive", "bad")];
        assert_eq!(
            judge(&i, "boot-4", "A", &bad),
            Verdict::RolledBack { slot_bad: true }
        );
        let unknown = [slot("A", "booted", "good"), slot("B", "inactive", "")];
        assert_eq!(
            judge(&i, "boot-4", "A", &unknown),
            Verdict::RolledBack { slot_bad: false }
        );
    }

    #[test]
    fn the_release_file_and_rauc_s_configuration_are_read() {
        let r = parse_release(
            "# made by the image build\nVERSION=0.1.0+20261130220501\nCOMPATIBLE=\"photo-pacs-rpi-arm64\"\n",
        )
        .unwrap();
        assert_eq!(r.version, "0.1.0+20261130220501");
        assert_eq!(r.compatible, "photo-pacs-rpi-arm64");
        assert_eq!(parse_release("COMPATIBLE=x\n"), None);
        let s = parse_system_conf(
            "[system]\ncompatible=photo-pacs-rpi-arm64\nbootloader=uboot\n\n[keyring]\npath=/etc/rauc/keyring.pem\n",
        )
        .unwrap();
        assert_eq!(s.compatible, "photo-pacs-rpi-arm64");
        assert_eq!(s.keyring, Some(PathBuf::from("/etc/rauc/keyring.pem")));
        assert!(parse_system_conf("[system]\nbootloader=uboot\n").is_err());
    }

    #[test]
    fn reboot_times_are_now_or_the_next_hh_mm() {
        let now = Local::now();
        assert_eq!(reboot_time("now", now).unwrap(), now.with_timezone(&Utc));
        let later = reboot_time("03:00", now).unwrap();
        assert!(later > now.with_timezone(&Utc));
        assert!(later - now.with_timezone(&Utc) <= chrono::Duration::hours(25));
        for bad in ["3:00", "25:00", "tonight", "03:00:00", ""] {
            assert!(reboot_time(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_record_reads_back_and_tolerates_fields_it_does_not_know() {
        let r = Record {
            installed: Some(installed()),
            last_result: None,
        };
        let mut v = serde_json::to_value(&r).unwrap();
        v["fromANewerVersion"] = serde_json::json!(1);
        let back: Record = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    fn service(dir: &Path) -> Updates {
        let cfg = Config {
            dir: dir.join("updates"),
            request_dir: dir.to_path_buf(),
            rauc_conf: dir.join("system.conf"),
            release_file: dir.join("release"),
            bus: Bus::default(),
            max_bytes: 1024,
            min_free: 0,
            boot_id: kernel_boot_id(),
        };
        std::fs::write(&cfg.release_file, "VERSION=0.1.0\n").unwrap();
        std::fs::write(&cfg.rauc_conf, "[system]\ncompatible=x\n").unwrap();
        Updates::new(cfg, Arc::new(Events::new()))
    }

    #[tokio::test]
    async fn a_reboot_waits_for_its_time_and_for_the_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let u = service(dir.path());
        let request = dir.path().join(REBOOT_REQUEST);
        let plan = u.schedule_reboot("now").unwrap();
        assert!(!u.tick_reboot(plan.scheduled_at, true), "outbox sending");
        assert!(u.lock().reboot.as_ref().unwrap().waiting_for_outbox);
        assert!(!request.exists());
        assert!(u.tick_reboot(plan.scheduled_at, false));
        assert!(request.exists());
        assert!(u.lock().reboot.is_none());
        std::fs::remove_file(&request).unwrap();
        let plan = u.schedule_reboot("04:30").unwrap();
        assert!(!u.tick_reboot(plan.scheduled_at - chrono::Duration::seconds(1), false));
        assert!(u.cancel_reboot());
        assert!(!u.tick_reboot(plan.scheduled_at, false));
        assert!(!request.exists());
    }

    #[tokio::test]
    async fn an_upload_past_the_limit_is_refused_and_its_file_removed() {
        let dir = tempfile::tempdir().unwrap();
        let u = service(dir.path());
        assert!(matches!(
            u.begin_upload(Some(2048)).await,
            Err(UpdateError::TooLarge { .. })
        ));
        let mut up = u.begin_upload(None).await.unwrap();
        if let Err(UpdateError::Full { .. }) = up.write(&[0u8; 1000]).await {
            eprintln!(
                "this machine's disk is under the outbox's guard: the size check is not reached"
            );
            return;
        }
        assert!(matches!(
            up.write(&[0u8; 100]).await,
            Err(UpdateError::TooLarge { .. })
        ));
        drop(up);
        let left: Vec<_> = std::fs::read_dir(dir.path().join("updates"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[tokio::test]
    async fn without_a_release_file_updates_are_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let u = service(dir.path());
        std::fs::remove_file(dir.path().join("release")).unwrap();
        assert!(matches!(
            u.begin_upload(None).await,
            Err(UpdateError::Unavailable(_))
        ));
        let v = u.view().await;
        assert!(!v.available);
        assert!(v.reason.unwrap().contains("not available"));
        assert!(matches!(u.claim(), Err(UpdateError::Unavailable(_))));
    }
}
