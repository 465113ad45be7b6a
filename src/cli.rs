//! The command-line tools beside the server: `convert` for the field and benchmarks, `echo`
//! for the installer on site, `send` for files kept by hand, `outbox` for the queue,
//! `backup` and `restore` for the configuration, `update` for the box's system.

use std::path::{Path, PathBuf};

use std::sync::Arc;

use crate::backup::{self, BackupError, Here, Report, RestoreError};
use crate::config::{EnvConfig, Settings, SettingsStore};
use crate::convert::{self, InstanceIds, Options};
use crate::dicom::TransferSyntax;
use crate::intake::form::{PerPhoto, RawForm, SiteFields};
use crate::outbox::{Outbox, OutboxError, StudyView};
use crate::pacs::{InstanceStatus, Outgoing, Sender};
use crate::telemetry::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Settings(String),
    #[error("{field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error(transparent)]
    Pacs(#[from] crate::pacs::PacsError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error("{0}")]
    Restore(String),
    #[error(transparent)]
    Update(#[from] crate::update::UpdateError),
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A refused value is named with its reason, as the settings page shows it.
impl From<RestoreError> for CliError {
    fn from(e: RestoreError) -> Self {
        match e {
            RestoreError::Values(ref fields) => CliError::Restore(format!(
                "{e}: {}",
                fields
                    .iter()
                    .map(|f| format!("{}: {}", f.field, f.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
            RestoreError::Save(crate::config::UpdateError::Invalid(fields)) => {
                RestoreError::Values(fields).into()
            }
            other => CliError::Restore(other.to_string()),
        }
    }
}

/// The study fields of `photo-pacs convert`, named as in the upload form.
#[derive(Debug, Default)]
pub struct ConvertRequest {
    pub patient_id: String,
    pub patient_name: Option<String>,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
    pub exam_date_time: Option<String>,
    pub exam_description: Option<String>,
    pub body_site: Option<String>,
    pub laterality: Option<String>,
    pub body_site_note: Option<String>,
}

/// The runtime settings as the server would use them: environment, then the INI file.
pub fn settings_in_force(env: &EnvConfig) -> Result<Settings, CliError> {
    SettingsStore::peek(&env.settings_path, &env.defaults).map_err(CliError::Settings)
}

/// Converts `files` into one study (one Study and Series UID) and writes `NNN_<name>.dcm`
/// files into `out`. Returns the paths written.
pub fn convert_files(
    env: &EnvConfig,
    settings: &Settings,
    req: ConvertRequest,
    files: &[PathBuf],
    out: &Path,
) -> Result<Vec<PathBuf>, CliError> {
    let form = RawForm {
        patient_id: Some(req.patient_id),
        patient_name: req.patient_name,
        birth_date: req.birth_date,
        sex: req.sex,
        exam_date_time: req.exam_date_time,
        client_time: None,
        exam_description: req.exam_description,
        worklist_entry: None,
        sites: SiteFields {
            body_site: PerPhoto {
                all: req.body_site,
                each: Vec::new(),
            },
            laterality: PerPhoto {
                all: req.laterality,
                each: Vec::new(),
            },
            note: PerPhoto {
                all: req.body_site_note,
                each: Vec::new(),
            },
        },
    };
    let now = chrono::Local::now().fixed_offset();
    let study = form
        .validate(now, settings.local_charset)
        .map_err(|e| CliError::Field {
            field: e.field,
            message: e.message,
        })?;
    let sites = form
        .sites(files.len(), settings.local_charset)
        .map_err(|e| CliError::Field {
            field: e.field,
            message: e.message,
        })?;
    let opts = Options::from_settings(settings, env.max_pixels, env.convert_memory_bytes);
    let file_err = |path: &Path, message: String| CliError::File {
        path: path.to_path_buf(),
        message,
    };
    std::fs::create_dir_all(out).map_err(|e| file_err(out, e.to_string()))?;
    let study_uid = study.study_uid(&env.uid_root);
    let series_uid = env.uid_root.new_uid();
    let mut written = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let bytes = std::fs::read(path).map_err(|e| file_err(path, e.to_string()))?;
        let probe =
            convert::probe(&bytes, opts.max_pixels).map_err(|e| file_err(path, e.to_string()))?;
        let ids = InstanceIds {
            study_uid: study_uid.clone(),
            series_uid: series_uid.clone(),
            sop_uid: env.uid_root.new_uid(),
            number: i as u32 + 1,
            created: chrono::Utc::now().with_timezone(study.exam.time.offset()),
        };
        let site = sites.get(i).and_then(Option::as_ref);
        let converted = convert::convert(&bytes, &probe, &study, &ids, site, &opts)
            .map_err(|e| file_err(path, e.to_string()))?;
        let stem = path
            .file_stem()
            .map_or_else(|| "image".into(), |s| s.to_string_lossy());
        let dst = out.join(format!("{:03}_{stem}.dcm", i + 1));
        std::fs::write(&dst, &converted.dicom).map_err(|e| file_err(&dst, e.to_string()))?;
        written.push(dst);
    }
    Ok(written)
}

/// Tests the PACS connection with the settings in force; returns a line for the installer.
pub async fn echo(env: &EnvConfig, settings: &Settings) -> Result<String, CliError> {
    let sender = Sender::for_backend(env.backend);
    let elapsed = sender.echo(settings).await?;
    Ok(if sender.mock().is_some() {
        "mock backend (demo mode): nothing to test, no PACS is contacted".to_string()
    } else {
        format!("success in {} ms", elapsed.as_millis())
    })
}

/// Sends DICOM files this gateway wrote (for instance ones an earlier version kept after a
/// failed delivery) to the PACS in one association or request, each offered as what it is.
pub async fn send_files(
    env: &EnvConfig,
    settings: &Settings,
    files: &[PathBuf],
) -> Result<Vec<(PathBuf, InstanceStatus)>, CliError> {
    let mut batch = Vec::with_capacity(files.len());
    for (i, path) in files.iter().enumerate() {
        let file = dicom_object::OpenFileOptions::new()
            .read_until(dicom_dictionary_std::tags::SPECIFIC_CHARACTER_SET)
            .open_file(path)
            .map_err(|e| CliError::File {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let meta = file.meta();
        let clean = |s: &str| s.trim_end_matches(['\0', ' ']).to_string();
        let ts = TransferSyntax::from_uid(&clean(&meta.transfer_syntax)).ok_or_else(|| {
            CliError::File {
                path: path.clone(),
                message: "in a transfer syntax this gateway does not write".into(),
            }
        })?;
        batch.push(Outgoing {
            index: i as u32 + 1,
            sop_instance_uid: clean(&meta.media_storage_sop_instance_uid),
            sop_class_uid: clean(&meta.media_storage_sop_class_uid),
            transfer_syntax: ts,
            path: path.clone(),
        });
    }
    let sender = Sender::for_backend(env.backend);
    let destination = sender.destination(settings);
    let statuses = sender
        .deliver(&destination, settings, &batch, &mut |_, _| {})
        .await?;
    Ok(files.iter().cloned().zip(statuses).collect())
}

/// The outbox in DICOM_DIR, for `photo-pacs outbox`. Changing it (`exclusive`) needs the
/// gateway stopped: it holds the outbox while it runs.
pub fn open_outbox(env: &EnvConfig, exclusive: bool) -> Result<Outbox, CliError> {
    let metrics = Arc::new(Metrics::new(env.backend.as_str()));
    let (outbox, _) = Outbox::open(
        &env.dicom_dir,
        env.keep_files_on_success,
        env.retry_max,
        metrics,
        exclusive,
    )?;
    Ok(outbox)
}

/// One line per study for `photo-pacs outbox list`: no patient data beyond the masked ID.
pub fn outbox_line(v: &StudyView) -> String {
    let stored = v
        .instances
        .iter()
        .filter(|i| i.delivery.is_stored())
        .count();
    let mut line = format!(
        "{}  {}  {:<8} {}/{} stored  {} attempt(s)  patient {}  to {}",
        v.id,
        v.created.format("%Y-%m-%d %H:%M:%SZ"),
        v.state.as_str(),
        stored,
        v.instances.len(),
        v.attempts,
        v.masked_patient_id().unwrap_or_else(|| "-".into()),
        v.destination.describe(),
    );
    if let Some(e) = &v.last_error {
        line.push_str(&format!(
            "  last error ({}): {}",
            e.class.as_str(),
            e.message
        ));
    }
    if let Some(next) = v.next_attempt.filter(|_| v.state.in_progress()) {
        line.push_str(&format!("  next try {}", next.format("%H:%M:%SZ")));
    }
    line
}

/// The environment variable `backup` and `restore` take the passphrase from: never an
/// argument, which any user of the box could read in the process list.
pub const PASSPHRASE_VAR: &str = "PHOTO_PACS_BACKUP_PASSPHRASE";

/// `photo-pacs backup`: the settings in force, this process's `PHOTO_PACS_*` environment and
/// the box's facts; with `passphrase`, secrets included and the whole file encrypted.
/// Returns the file's bytes and the name the settings page would give it.
pub fn backup_file(
    env: &EnvConfig,
    passphrase: Option<&str>,
) -> Result<(Vec<u8>, String), CliError> {
    let settings = settings_in_force(env)?;
    // Run as root on the box, the CLI sees the Wi-Fi and tunnel files' folders itself.
    let facts = backup::Facts::of_this_box();
    let doc = backup::document_now(&settings, &facts, passphrase.is_some());
    let plain = serde_json::to_vec_pretty(&doc).map_err(|e| BackupError::Encrypt(e.to_string()))?;
    let bytes = match passphrase {
        Some(p) => backup::seal(&plain, p)?,
        None => plain,
    };
    let when = chrono::Local::now().format("%Y%m%d-%H%M").to_string();
    Ok((
        bytes,
        backup::file_name(&facts.hostname, &when, passphrase.is_some()),
    ))
}

/// `photo-pacs restore`: what `file` would change, judged as the settings page judges a
/// restore; with `apply`, written through the same settings store the gateway uses.
pub async fn restore_file(
    env: &EnvConfig,
    file: &Path,
    passphrase: Option<&str>,
    apply: bool,
) -> Result<Report, CliError> {
    let bytes =
        crate::storage::read_small(file, backup::MAX_FILE as u64).map_err(|e| CliError::File {
            path: file.to_path_buf(),
            message: e.to_string(),
        })?;
    let opened = backup::open(&bytes, passphrase)?;
    let sender = Sender::for_backend(env.backend);
    let check = |s: &Settings| sender.check(s);
    let vars = backup::process_env();
    let facts = backup::Facts::of_this_box();
    if !apply {
        // Read only: a broken settings file is reported, not moved aside.
        let current = settings_in_force(env)?;
        let here = Here {
            settings: &current,
            env: &vars,
            facts: &facts,
        };
        return Ok(backup::plan(&opened, here, check)?.report);
    }
    let store = SettingsStore::load(env.settings_path.clone(), env.defaults.clone());
    if let Some(problem) = store.problem() {
        eprintln!("photo-pacs: {problem}");
    }
    let current = store.current();
    let here = Here {
        settings: &current,
        env: &vars,
        facts: &facts,
    };
    let plan = backup::plan(&opened, here, check)?;
    let mut report = backup::apply(plan, &store, check).await?;
    // Run as root in the service's folder, the files just written are root's: give them to
    // the folder's owner, or the gateway could not read its own settings at its next start.
    let settings = &env.settings_path;
    for path in [
        settings.clone(),
        crate::config::admin_hash_path(settings),
        settings.with_file_name(backup::RESTORED_ENV),
    ] {
        if path.exists()
            && let Err(e) = crate::provision::follow_owner(&path)
        {
            report.warnings.push(format!(
                "could not give {} to its folder's owner ({e}): the gateway may not be able to read it",
                path.display()
            ));
        }
    }
    Ok(report)
}

/// The lines `photo-pacs restore` prints for a report.
pub fn report_lines(report: &Report) -> Vec<String> {
    let mut lines: Vec<String> = report
        .changes
        .iter()
        .map(|c| format!("{}: {:?} -> {:?}", c.field, c.from, c.to))
        .collect();
    lines.push(format!(
        "{} value(s) already as in the backup",
        report.unchanged
    ));
    lines.extend(
        report
            .not_restored
            .iter()
            .map(|n| format!("not restored: {}: {}", n.item, n.reason)),
    );
    lines.extend(report.warnings.iter().map(|w| format!("warning: {w}")));
    lines
}

/// The update service as the console uses it (events stay in this process).
pub fn updates(env: &EnvConfig) -> crate::update::Updates {
    crate::update::Updates::new(
        crate::update::Config::from_env(env),
        Arc::new(crate::telemetry::Events::new()),
    )
}

/// `photo-pacs update --status`: the running release and one line per root slot.
pub async fn update_status(env: &EnvConfig) -> Result<Vec<String>, CliError> {
    let u = updates(env);
    let (release, system) = u.here()?;
    let (slots, booted) = u.slots().await?;
    let mut lines = vec![format!(
        "running {} ({}), booted slot {}",
        release.version,
        system.compatible,
        booted.as_deref().unwrap_or("unknown")
    )];
    for s in slots {
        lines.push(format!(
            "slot {} ({}): {} {}, {}, installed {}",
            s.bootname,
            s.name,
            s.version.as_deref().unwrap_or("(version unknown)"),
            s.state,
            if s.boot_status.is_empty() {
                "boot status unknown"
            } else {
                &s.boot_status
            },
            s.installed_at.as_deref().unwrap_or("-"),
        ));
    }
    Ok(lines)
}

/// Brings a bundle (a file or an https:// URL) into the updates directory and judges it.
pub async fn update_fetch(
    u: &crate::update::Updates,
    target: &str,
    allow_downgrade: bool,
) -> Result<crate::update::Pending, CliError> {
    if target.contains("://") {
        return Ok(u.download(target, allow_downgrade).await?);
    }
    let path = PathBuf::from(target);
    let read_err = |source| CliError::Read {
        path: path.clone(),
        source,
    };
    let mut file = tokio::fs::File::open(&path).await.map_err(read_err)?;
    let len = file.metadata().await.map_err(read_err)?.len();
    let mut up = u.begin_upload(Some(len)).await?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        use tokio::io::AsyncReadExt;
        let n = file.read(&mut buf).await.map_err(read_err)?;
        if n == 0 {
            break;
        }
        up.write(&buf[..n]).await?;
    }
    Ok(u.accept(up, allow_downgrade).await?)
}

/// The bundle's facts, as shown before installing.
pub fn pending_lines(p: &crate::update::Pending) -> Vec<String> {
    vec![
        format!("version:    {}", p.version),
        format!("compatible: {}", p.compatible),
        format!("signed by:  {}", p.signer),
        format!("size:       {} MB", p.size.div_ceil(1024 * 1024)),
    ]
}

/// Installs the pending bundle; with `allow_downgrade` the box's pre-install handler is
/// told (by a flag file that exists for this one install only).
pub async fn update_install(
    u: &crate::update::Updates,
    allow_downgrade: bool,
    progress: impl FnMut(&crate::update::rauc::Properties),
) -> Result<crate::update::LastResult, CliError> {
    let flag = Path::new(crate::update::ALLOW_DOWNGRADE_FLAG);
    if allow_downgrade {
        if let Some(dir) = flag.parent() {
            std::fs::create_dir_all(dir).map_err(|source| CliError::Read {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(flag, b"").map_err(|source| CliError::Read {
            path: flag.to_path_buf(),
            source,
        })?;
    }
    let result = u.install(progress).await;
    if allow_downgrade {
        let _ = std::fs::remove_file(flag);
    }
    Ok(result?)
}
