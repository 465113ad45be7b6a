//! The gateway's shared state, built once at start-up from the validated configuration.

use std::sync::Arc;

use crate::access::{
    FAILURE_WINDOW, LOOKUPS, Limiter, PASSWORD_CHECKS, PASSWORD_FAILURES, PIN_FAILURES, Sessions,
    Verifier, hash_password,
};
use crate::clock::Clock;
use crate::config::{AdminGuard, EnvConfig, Key, Settings, SettingsStore};
use crate::intake::Intake;
use crate::outbox::{Opened, Outbox, OutboxError};
use crate::pacs::Sender;
use crate::reception::Reception;
use crate::telemetry::{Events, Metrics};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create directory {path}: {source}")]
    Directory {
        path: String,
        source: std::io::Error,
    },
    #[error("PHOTO_PACS_ADMIN_PASSWORD: {0}")]
    AdminPassword(crate::access::PasswordError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

/// Sessions, failed-guess limits and the admin password given by the environment.
pub struct Access {
    /// The hash of PHOTO_PACS_ADMIN_PASSWORD; the plain value is not kept.
    env_hash: Option<String>,
    pub sessions: Sessions,
    /// Admin password guesses.
    pub password_limiter: Limiter,
    /// Upload PIN guesses: counted apart, so a right PIN never buys password guesses.
    pub pin_limiter: Limiter,
    /// Patient lookups, each one counted.
    pub lookup_limiter: Limiter,
    /// Password checks, on PASSWORD_CHECKS threads of their own (argon2's memory, times
    /// this, is the bound).
    pub verifier: Verifier,
}

/// One echo of the PACS made by the gateway itself.
#[derive(Clone, Debug)]
pub struct PacsCheck {
    pub at: chrono::DateTime<chrono::Utc>,
    pub result: Result<std::time::Duration, crate::pacs::PacsError>,
}

pub struct App {
    pub env: EnvConfig,
    /// The first-boot file's problems: written before the service starts, so read once.
    boot_problems: Vec<String>,
    pub access: Access,
    pub settings: SettingsStore,
    pub sender: Arc<Sender>,
    pub intake: Arc<Intake>,
    pub outbox: Arc<Outbox>,
    pub metrics: Arc<Metrics>,
    /// What happened lately, for the status page (no patient data).
    pub events: Arc<Events>,
    /// When this process started, for the status page's uptime.
    pub started: std::time::Instant,
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// Whether the box's clock is set, and how far it is from the phones'.
    pub clock: Clock,
    /// The last echo of the PACS, for the status page.
    pub pacs_check: std::sync::Mutex<Option<PacsCheck>>,
    /// The worklist and patient lookups, cached in memory only.
    pub reception: Reception,
    /// Updates of the root file system (RAUC).
    pub updates: Arc<crate::update::Updates>,
    /// What the outbox's start-up found (old folders to tell the admin about).
    opened: Opened,
}

impl App {
    /// What an admin should fix or know, in words: a settings file that was set aside,
    /// settings every delivery would fail on, and risky choices such as unchecked TLS.
    pub fn warnings(&self, current: &Settings) -> Vec<String> {
        let mut warnings: Vec<String> = self.settings.problem().into_iter().collect();
        warnings.extend(self.boot_problems.iter().cloned());
        for p in self.sender.check(current) {
            let env = Key::from_json(&p.field)
                .map(|k| k.names().env)
                .unwrap_or_default();
            warnings.push(format!("{} (PHOTO_PACS_{env}): {}", p.field, p.message));
        }
        warnings.extend(self.sender.warnings(current));
        let shows_patients = current.worklist_enabled
            || (current.patient_lookup_enabled && self.env.backend != crate::config::Backend::Mock);
        if shows_patients && !current.upload_pin.is_set() {
            warnings.push(
                "the worklist and patient lookup show patient names to anyone who can reach this box: set an upload PIN (uploadPin)".into(),
            );
        }
        if current.local_resize_max == 0 {
            const MB: u64 = 1024 * 1024;
            if !current.local_transfer_syntax.is_encapsulated() {
                warnings.push(
                    "localResizeMax is 0 (original size) with an uncompressed transfer syntax: a 12-megapixel photo becomes a 36 MB object; choose JPEG Baseline (localTransferSyntax) to keep the camera's JPEG as it is".into(),
                );
            }
            let needed = crate::convert::memory_for_turned_48mp();
            if needed > self.env.convert_memory_bytes {
                warnings.push(format!(
                    "at original size, a 48-megapixel photo turned by its EXIF orientation needs about {} MB to convert, more than PHOTO_PACS_CONVERT_MEMORY_MB ({} MB): such photos will be refused; raise it if the box has the memory, or set a resize limit",
                    needed.div_ceil(MB),
                    self.env.convert_memory_bytes / MB
                ));
            }
        }
        if self.opened.legacy_folders > 0 {
            warnings.push(format!(
                "{} folder(s) of DICOM files from an earlier version are in {}: they were never confirmed as sent; send them with `photo-pacs send` if the PACS lacks them, then delete them",
                self.opened.legacy_folders,
                self.env.dicom_dir.display()
            ));
        }
        if self.opened.unreadable > 0 {
            warnings.push(format!(
                "{} study folder(s) in {} have an unreadable record and are not delivered; check them by hand",
                self.opened.unreadable,
                self.env.dicom_dir.display()
            ));
        }
        let elsewhere = self.outbox.elsewhere(&self.sender.destination(current));
        if elsewhere > 0 {
            warnings.push(format!(
                "{elsewhere} queued stud{} addressed to another PACS than the one set now: retry them in the outbox to send them here",
                if elsewhere == 1 { "y is" } else { "ies are" }
            ));
        }
        let pin = current.upload_pin.expose().chars().count();
        if (1..crate::config::MIN_NEW_PIN).contains(&pin) {
            warnings.push(format!(
                "the upload PIN has {pin} characters: it still works, but a new one needs at least {} (uploadPin)",
                crate::config::MIN_NEW_PIN
            ));
        }
        match self.admin() {
            AdminGuard::Open => warnings.push(
                "no admin password is set: anyone on this network can change these settings (set one below, or PHOTO_PACS_ADMIN_PASSWORD)".into(),
            ),
            AdminGuard::Locked(reason) => warnings.push(reason),
            AdminGuard::Hash(_) => {}
        }
        warnings
    }

    /// After the settings changed (a PUT, a restore): the time helper's request follows.
    pub fn settings_changed(&self) {
        if let Err(e) =
            crate::clock::write_request(&self.env.settings_path, &self.settings.current())
        {
            log::warn!("cannot write the time helper's request beside the settings: {e}");
        }
    }

    /// What guards the settings: the password set from the settings page, else the
    /// environment's; a password file that cannot be read keeps them locked unless the
    /// environment gives a password.
    pub fn admin(&self) -> AdminGuard {
        match (self.settings.admin_guard(), &self.access.env_hash) {
            (AdminGuard::Hash(h), _) => AdminGuard::Hash(h),
            (_, Some(env)) => AdminGuard::Hash(env.clone()),
            (guard, None) => guard,
        }
    }

    pub fn new(mut env: EnvConfig) -> Result<Self, StartError> {
        let env_hash = match env.admin_password.take() {
            Some(p) => Some(hash_password(p.expose()).map_err(StartError::AdminPassword)?),
            None => None,
        };
        let access = Access {
            env_hash,
            sessions: Sessions::new(env.session_idle),
            password_limiter: Limiter::new(
                PASSWORD_FAILURES.0,
                PASSWORD_FAILURES.1,
                FAILURE_WINDOW,
            ),
            pin_limiter: Limiter::new(PIN_FAILURES.0, PIN_FAILURES.1, FAILURE_WINDOW),
            lookup_limiter: Limiter::new(LOOKUPS.0, LOOKUPS.1, FAILURE_WINDOW),
            verifier: Verifier::new(PASSWORD_CHECKS),
        };
        for dir in [&env.upload_dir, &env.dicom_dir] {
            crate::storage::create_private_dir(dir)
                .and_then(|()| {
                    // An older version or a hand-made folder may be open to others.
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(|source| StartError::Directory {
                    path: dir.display().to_string(),
                    source,
                })?;
        }
        let sender = Arc::new(Sender::for_backend(env.backend));
        let metrics = Arc::new(Metrics::new(env.backend.as_str()));
        let settings = SettingsStore::load(env.settings_path.clone(), env.defaults.clone());
        let (mut outbox, opened) = Outbox::open(
            &env.dicom_dir,
            env.keep_files_on_success,
            env.retry_max,
            metrics.clone(),
            true,
        )?;
        let events = Arc::new(Events::new());
        events.started(env!("CARGO_PKG_VERSION"));
        outbox.set_events(events.clone());
        let outbox = Arc::new(outbox);
        let intake = Arc::new(Intake::new(
            &env,
            sender.clone(),
            outbox.clone(),
            metrics.clone(),
        ));
        let swept = intake.sweep().map_err(|source| StartError::Directory {
            path: env.upload_dir.display().to_string(),
            source,
        })?;
        if swept > 0 || opened.incomplete_removed > 0 {
            log::warn!(
                staging = swept,
                studies = opened.incomplete_removed;
                "removed uploads that a stop or crash interrupted before they were accepted"
            );
        }
        if opened.resumed > 0 {
            log::info!(studies = opened.resumed; "outbox: resuming delivery of queued studies");
        }
        let (env_backend, env_worklist_max) = (env.backend, env.worklist_max);
        let clock = Clock::new(env.clock_sync_file.clone());
        let app_settings = settings.current();
        // The time helper (on the SD image) applies what the settings say; a box moved to a
        // new card, or settings restored, get their zone and servers back at start.
        if let Err(e) = crate::clock::write_request(&env.settings_path, &app_settings) {
            log::warn!("cannot write the time helper's request beside the settings: {e}");
        }
        let updates = Arc::new(crate::update::Updates::new(
            crate::update::Config::from_env(&env),
            events.clone(),
        ));
        Ok(App {
            updates,
            boot_problems: crate::provision::reported_problems(&env.settings_path),
            env,
            access,
            settings,
            sender,
            intake,
            outbox,
            metrics,
            events,
            started: std::time::Instant::now(),
            started_at: chrono::Utc::now(),
            clock,
            pacs_check: std::sync::Mutex::new(None),
            reception: Reception::new(env_backend, env_worklist_max),
            opened,
        })
    }
}
