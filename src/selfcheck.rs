//! The self-check a freshly booted box runs (as root, from the unit that marks the new root
//! slot good): the gateway answers its health check, and the data it keeps on /data can
//! still be read and written. One line per check; nothing of a patient, no secret.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{EnvConfig, SettingsStore};
use crate::outbox::{Outbox, OutboxError, StudyState};
use crate::supervisor;
use crate::telemetry::Metrics;

/// How long `photo-pacs self-check` waits for the gateway by default: a cold Pi with a full
/// outbox can take most of a minute before it answers.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);

/// Why one check failed. The text is what the check's line shows after its name.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("GET /healthz on {addr} did not answer 200 within {secs} s")]
    NotAnswering { addr: SocketAddr, secs: u64 },
    #[error("{path} does not exist")]
    Missing { path: PathBuf },
    #[error("{path} cannot be read: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not writable: {source}")]
    NotWritable {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The settings file's own complaint: it names the line and key, never a value.
    #[error("{0}")]
    Settings(String),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

/// One check's result: its name and what it found (or why it failed).
#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Result<String, CheckError>,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.outcome.is_ok()
    }

    /// `ok   name: detail` or `FAIL name: reason`, for stdout and the journal.
    pub fn line(&self) -> String {
        match &self.outcome {
            Ok(detail) => format!("ok   {}: {detail}", self.name),
            Err(e) => format!("FAIL {}: {e}", self.name),
        }
    }
}

/// The checks failed; their names, for the summary line and the exit status.
#[derive(Debug, thiserror::Error)]
#[error("self-check failed: {}", .0.join(", "))]
pub struct Failed(pub Vec<&'static str>);

/// Runs every check and returns them in order. The gateway is asked first: the data
/// checks read what it has set up (the outbox folder), and must not create it as root.
pub async fn run(env: &EnvConfig, timeout: Duration) -> Vec<Check> {
    let addr = supervisor::self_address(env.listen);
    let data_dir = data_dir(env);
    vec![
        Check {
            name: "gateway",
            outcome: gateway(addr, timeout).await,
        },
        Check {
            name: "data",
            outcome: writable_dirs(&[data_dir, &env.dicom_dir, &env.upload_dir]),
        },
        Check {
            name: "settings",
            outcome: settings(env),
        },
        Check {
            name: "outbox",
            outcome: outbox(env),
        },
    ]
}

/// [`Failed`] naming each failed check, or `Ok` when all passed.
pub fn verdict(checks: &[Check]) -> Result<(), Failed> {
    let failed: Vec<&'static str> = checks
        .iter()
        .filter(|c| !c.passed())
        .map(|c| c.name)
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failed(failed))
    }
}

/// The folder the settings file lives in: the gateway's data directory.
fn data_dir(env: &EnvConfig) -> &Path {
    env.settings_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Asks `GET /healthz` on `addr` every second until it answers 200 or `timeout` has
/// passed: the unit may run while the gateway is still starting.
pub async fn gateway(addr: SocketAddr, timeout: Duration) -> Result<String, CheckError> {
    let started = tokio::time::Instant::now();
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        // One attempt may not outlast the whole wait, but gets at least a second: a busy
        // box answers slowly, and a timeout of 0 still means "ask once".
        let attempt = left.clamp(Duration::from_secs(1), Duration::from_secs(5));
        if supervisor::answers(addr, attempt).await {
            return Ok(format!(
                "GET /healthz on {addr} answered 200 after {} s",
                started.elapsed().as_secs()
            ));
        }
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(CheckError::NotAnswering {
                addr,
                secs: timeout.as_secs(),
            });
        }
        // The last try comes at the deadline itself, not a second before it.
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
    }
}

/// Each folder exists, can be listed, and takes a new file (created, synced and removed
/// again: a data partition remounted read-only after an error fails here).
pub fn writable_dirs(dirs: &[&Path]) -> Result<String, CheckError> {
    let mut seen: Vec<&Path> = Vec::new();
    for dir in dirs {
        if seen.contains(dir) {
            continue;
        }
        seen.push(dir);
        writable_dir(dir)?;
    }
    let shown: Vec<String> = seen.iter().map(|d| d.display().to_string()).collect();
    Ok(format!("{} readable and writable", shown.join(", ")))
}

fn writable_dir(dir: &Path) -> Result<(), CheckError> {
    let unreadable = |source| CheckError::Unreadable {
        path: dir.to_path_buf(),
        source,
    };
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Not made here: as root it would belong to root, and the gateway could not
            // write to it afterwards.
            return Err(CheckError::Missing {
                path: dir.to_path_buf(),
            });
        }
        Err(e) => return Err(unreadable(e)),
        Ok(_) => {}
    }
    std::fs::read_dir(dir).map_err(unreadable)?;
    let probe = dir.join(format!(".self-check-{}", std::process::id()));
    let not_writable = |source| CheckError::NotWritable {
        path: dir.to_path_buf(),
        source,
    };
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&probe)
        .and_then(|mut f| {
            f.write_all(b"self-check\n")?;
            f.sync_all()
        });
    // Removed whatever the write did, so a failed check leaves nothing behind either.
    let removed = std::fs::remove_file(&probe);
    written.map_err(not_writable)?;
    removed.map_err(not_writable)
}

/// The settings file can be read and understood, as the gateway would read it now. No
/// file is fine: nothing was ever saved, the environment's defaults apply.
pub fn settings(env: &EnvConfig) -> Result<String, CheckError> {
    let path = &env.settings_path;
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(format!(
                "{} not written yet: the environment's defaults apply",
                path.display()
            ));
        }
        Err(e) => {
            return Err(CheckError::Unreadable {
                path: path.clone(),
                source: e,
            });
        }
        Ok(_) => {}
    }
    SettingsStore::peek(path, &env.defaults).map_err(CheckError::Settings)?;
    Ok(format!("{} read", path.display()))
}

/// The outbox opens as `photo-pacs outbox list` opens it: read only, beside the running
/// gateway, changing nothing. Counts only; no study's patient.
pub fn outbox(env: &EnvConfig) -> Result<String, CheckError> {
    let root = &env.dicom_dir;
    if !root.is_dir() {
        // Outbox::open would create it, as root: refuse to, see writable_dir.
        return Err(CheckError::Missing { path: root.clone() });
    }
    let metrics = std::sync::Arc::new(Metrics::new(env.backend.as_str()));
    let (outbox, opened) = Outbox::open(
        root,
        env.keep_files_on_success,
        env.retry_max,
        metrics,
        false,
    )?;
    let studies = outbox.list();
    let waiting = studies.iter().filter(|v| v.state.in_progress()).count();
    let refused = studies
        .iter()
        .filter(|v| matches!(v.state, StudyState::Failed | StudyState::Partial))
        .count();
    let mut detail = format!(
        "{} opened: {} in all, {waiting} waiting, {refused} refused",
        root.display(),
        studies.len()
    );
    // Reported, not failed: the gateway runs with them too, and an admin decides.
    if opened.unreadable > 0 {
        detail.push_str(&format!(
            ", {} unreadable record(s) left alone",
            opened.unreadable
        ));
    }
    Ok(detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_in(dir: &Path, listen: &str) -> EnvConfig {
        let d = dir.display();
        EnvConfig::from_vars([
            ("PHOTO_PACS_LISTEN".to_string(), listen.to_string()),
            (
                "PHOTO_PACS_SETTINGS_PATH".to_string(),
                format!("{d}/settings.ini"),
            ),
            ("PHOTO_PACS_DICOM_DIR".to_string(), format!("{d}/dicom")),
            ("PHOTO_PACS_UPLOAD_DIR".to_string(), format!("{d}/uploads")),
        ])
        .unwrap()
    }

    #[test]
    fn a_writable_folder_passes_and_keeps_no_probe() {
        let tmp = tempfile::tempdir().unwrap();
        let detail = writable_dirs(&[tmp.path(), tmp.path()]).unwrap();
        assert_eq!(
            detail.matches(&tmp.path().display().to_string()).count(),
            1,
            "each folder once: {detail}"
        );
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_missing_folder_fails_and_is_not_created() {
        let tmp = tempfile::tempdir().unwrap();
        let gone = tmp.path().join("gone");
        let err = writable_dirs(&[&gone]).unwrap_err();
        assert!(matches!(err, CheckError::Missing { .. }), "{err}");
        assert!(!gone.exists());
    }

    #[test]
    fn a_read_only_folder_fails() {
        use std::os::unix::fs::PermissionsExt;
        if rustix::process::geteuid().is_root() {
            // Root writes through any mode; only a read-only mount stops it.
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ro");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o500)).unwrap();
        let err = writable_dirs(&[&dir]).unwrap_err();
        assert!(matches!(err, CheckError::NotWritable { .. }), "{err}");
    }

    #[test]
    fn settings_missing_is_fine_and_broken_fails_naming_the_line_not_the_value() {
        let tmp = tempfile::tempdir().unwrap();
        let env = env_in(tmp.path(), "127.0.0.1:9");
        assert!(settings(&env).unwrap().contains("not written yet"));
        std::fs::write(
            &env.settings_path,
            "[dicomweb]\npassword=hunter2\n[pacs]\nport=abc\n",
        )
        .unwrap();
        let err = settings(&env).unwrap_err().to_string();
        assert!(err.contains("line 4"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn the_outbox_is_opened_but_never_created() {
        let tmp = tempfile::tempdir().unwrap();
        let env = env_in(tmp.path(), "127.0.0.1:9");
        assert!(matches!(outbox(&env), Err(CheckError::Missing { .. })));
        assert!(!env.dicom_dir.exists());
        std::fs::create_dir(&env.dicom_dir).unwrap();
        let detail = outbox(&env).unwrap();
        assert!(detail.contains("0 in all"), "{detail}");
    }

    #[tokio::test]
    async fn a_closed_port_fails_after_the_timeout_and_names_the_check() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let tmp = tempfile::tempdir().unwrap();
        let env = env_in(tmp.path(), &addr.to_string());
        for d in [&env.dicom_dir, &env.upload_dir] {
            std::fs::create_dir_all(d).unwrap();
        }
        let started = std::time::Instant::now();
        let checks = run(&env, Duration::from_secs(1)).await;
        assert!(started.elapsed() < Duration::from_secs(10));
        let lines: Vec<String> = checks.iter().map(Check::line).collect();
        assert!(lines[0].starts_with("FAIL gateway:"), "{lines:?}");
        assert!(lines[1..].iter().all(|l| l.starts_with("ok ")), "{lines:?}");
        let failed = verdict(&checks).unwrap_err();
        assert_eq!(failed.to_string(), "self-check failed: gateway");
    }

    #[tokio::test]
    async fn a_health_check_that_answers_later_is_waited_for() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        // Starts answering after a second and a half, as a gateway still starting would.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let detail = gateway(addr, Duration::from_secs(10)).await.unwrap();
        assert!(detail.contains("answered 200"), "{detail}");
    }
}
