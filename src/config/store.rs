//! The settings store: environment defaults overridden by the INI file, replaced atomically.
//!
//! The INI file holds only the keys someone set (through the settings page or by hand), so an
//! environment default that was never overridden keeps following the environment.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use ini::Ini;
use serde_json::{Map, Value};

use super::settings::{FieldError, Key, Settings, parse_update};

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("invalid settings")]
    Invalid(Vec<FieldError>),
    #[error("could not save the settings file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{0}")]
    Blocked(String),
}

pub struct SettingsStore {
    path: PathBuf,
    defaults: Settings,
    state: RwLock<State>,
    /// Serialises writers so two saves never interleave their temp files and renames.
    write_lock: tokio::sync::Mutex<()>,
}

/// What guards the settings, as found on disk.
#[derive(Clone, Debug, PartialEq)]
pub enum AdminGuard {
    /// No admin password was ever set here.
    Open,
    /// The argon2 hash of the admin password.
    Hash(String),
    /// The password file (or, before there was one, the settings file) could not be read:
    /// whether a password was set is unknown, so the settings stay shut. The reason says
    /// what to fix; it never holds the file's contents.
    Locked(String),
}

#[derive(Clone)]
struct State {
    overrides: BTreeMap<Key, String>,
    /// Keys this version does not know (a newer one wrote them before a rollback, or a
    /// hand edit): ignored, and written back as they were, so rolling forward again finds
    /// them.
    unknown: Vec<UnknownKey>,
    /// Who may change settings, from the admin password file.
    admin: AdminGuard,
    current: Arc<Settings>,
    /// What went wrong with the file at start-up, for the log and the settings API.
    problem: Option<String>,
    /// Set when a broken file could not be moved aside: saving would destroy it.
    blocked: bool,
}

impl SettingsStore {
    /// Loads the file at `path` over `defaults`. Never fails: a file we cannot understand is
    /// renamed aside (never overwritten) and the gateway runs on the defaults, with the reason
    /// kept in [`SettingsStore::problem`].
    pub fn load(path: PathBuf, defaults: Settings) -> Self {
        let mut state = State {
            overrides: BTreeMap::new(),
            unknown: Vec::new(),
            admin: AdminGuard::Open,
            current: Arc::new(defaults.clone()),
            problem: None,
            blocked: false,
        };
        // The hash the settings file holds (older versions kept it only there), or what is
        // known of it when the file is broken; the file is read once for both.
        let (from_ini, broken) = match read_file(&path) {
            Ok(None) => (Ok(None), None),
            Ok(Some(bytes)) => match parse_bytes(&bytes, &defaults) {
                Ok(file) => {
                    for k in &file.unknown {
                        // Named, never its value: it may be a newer version's secret.
                        log::warn!(
                            "settings file {}: [{}] {} is not a setting of this version; ignored, and kept in the file",
                            path.display(),
                            k.section,
                            k.name
                        );
                    }
                    state.overrides = file.overrides;
                    state.unknown = file.unknown;
                    state.current = Arc::new(file.settings);
                    (Ok(file.admin_hash), None)
                }
                Err(reason) => (Ok(salvage_admin_hash(&bytes)), Some(reason)),
            },
            Err(reason) => (
                Err(format!(
                    "the settings file {} {reason} and no admin password file exists; settings stay locked until it is fixed or PHOTO_PACS_ADMIN_PASSWORD is set",
                    path.display()
                )),
                Some(reason),
            ),
        };
        if let Some(reason) = broken {
            let shown = path.display();
            let problem = match set_aside(&path) {
                Ok(aside) => format!(
                    "settings file {shown} {reason}; it was renamed to {} and the gateway runs on the environment defaults",
                    aside.display()
                ),
                Err(e) => {
                    state.blocked = true;
                    format!(
                        "settings file {shown} {reason}; it could not be renamed aside ({e}), so settings cannot be saved until it is fixed by hand"
                    )
                }
            };
            state.problem = Some(problem);
        }
        state.admin = load_admin_guard(&admin_hash_path(&path), from_ini);
        SettingsStore {
            path,
            defaults,
            state: RwLock::new(state),
            write_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The settings in force, for command-line tools: read only, so a broken file is
    /// reported but left where it is.
    pub fn peek(path: &Path, defaults: &Settings) -> Result<Settings, String> {
        match read_overrides(path, defaults) {
            Ok(None) => Ok(defaults.clone()),
            Ok(Some(file)) => Ok(file.settings),
            Err(reason) => Err(format!("settings file {} {reason}", path.display())),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The settings for one request; later updates do not change a snapshot already taken.
    pub fn current(&self) -> Arc<Settings> {
        self.read_state().current.clone()
    }

    pub fn problem(&self) -> Option<String> {
        self.read_state().problem.clone()
    }

    /// Validates `update` (API names), saves the file atomically and only then makes the
    /// new settings current. Nothing changes, on disk or in memory, if any field is refused.
    /// `check` judges the settings as a whole (e.g. that certificate files can be read); only
    /// problems the update would introduce are refused, so an old problem elsewhere does not
    /// block an unrelated change.
    pub async fn update(
        &self,
        update: &Map<String, Value>,
        check: impl Fn(&Settings) -> Vec<FieldError>,
    ) -> Result<Arc<Settings>, UpdateError> {
        self.update_from(update, check).await.map(|(_, next)| next)
    }

    /// [`SettingsStore::update`], also returning the settings it replaced: a restore reports
    /// what it changed against exactly those, not a snapshot another writer may have passed.
    pub async fn update_from(
        &self,
        update: &Map<String, Value>,
        check: impl Fn(&Settings) -> Vec<FieldError>,
    ) -> Result<(Arc<Settings>, Arc<Settings>), UpdateError> {
        let _guard = self.write_lock.lock().await;
        let state = self.read_state().clone();
        if state.blocked {
            return Err(UpdateError::Blocked(state.problem.unwrap_or_default()));
        }
        let (next, changes) = parse_update(&state.current, update).map_err(UpdateError::Invalid)?;
        let before = check(&state.current);
        let introduced: Vec<FieldError> = check(&next)
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        if !introduced.is_empty() {
            return Err(UpdateError::Invalid(introduced));
        }
        let mut overrides = state.overrides.clone();
        for (key, raw) in changes {
            if raw == self.defaults.raw(key) && !key.is_secret() {
                // Back to the environment's value: follow the environment again.
                overrides.remove(&key);
            } else {
                overrides.insert(key, raw);
            }
        }
        let hash = match state.admin {
            AdminGuard::Hash(ref h) => Some(h.as_str()),
            _ => None,
        };
        write_off_thread(
            self.path.clone(),
            render_ini(&overrides, &state.unknown, hash),
        )
        .await?;
        let next = Arc::new(next);
        let mut w = self.state.write().unwrap_or_else(|p| p.into_inner());
        w.overrides = overrides;
        w.current = next.clone();
        w.problem = None;
        Ok((state.current, next))
    }

    /// Who may change settings, as the admin password file says.
    pub fn admin_guard(&self) -> AdminGuard {
        self.read_state().admin.clone()
    }

    /// The admin password hash saved from the settings page, if any.
    pub fn admin_hash(&self) -> Option<String> {
        match self.read_state().admin {
            AdminGuard::Hash(ref h) => Some(h.clone()),
            _ => None,
        }
    }

    /// Saves a new admin password hash (already checked by the caller): in its own file
    /// first, which a bad settings edit cannot lose, then in the settings file too, so an
    /// older version still finds it.
    pub async fn set_admin_hash(&self, hash: String) -> Result<(), UpdateError> {
        let _guard = self.write_lock.lock().await;
        let state = self.read_state().clone();
        write_off_thread(admin_hash_path(&self.path), format!("{hash}\n")).await?;
        {
            let mut w = self.state.write().unwrap_or_else(|p| p.into_inner());
            w.admin = AdminGuard::Hash(hash.clone());
        }
        if !state.blocked {
            let text = render_ini(&state.overrides, &state.unknown, Some(&hash));
            write_off_thread(self.path.clone(), text).await?;
            let mut w = self.state.write().unwrap_or_else(|p| p.into_inner());
            w.problem = None;
        }
        Ok(())
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A panic elsewhere while holding the lock must not take the settings down with it.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where the admin password hash lives in the INI file (not a setting: it is changed only
/// through the password route, which checks the current password).
const ADMIN_HASH: (&str, &str) = ("security", "admin_password_hash");

/// [`write_atomically`] on the blocking pool: the settings file and the password file.
async fn write_off_thread(path: PathBuf, text: String) -> Result<(), UpdateError> {
    let target = path.clone();
    tokio::task::spawn_blocking(move || write_atomically(&target, text.as_bytes()))
        .await
        .map_err(io::Error::other)
        .and_then(|written| written)
        .map_err(|source| UpdateError::Write { path, source })
}

/// The admin password's own file, beside the settings file.
pub fn admin_hash_path(settings: &Path) -> PathBuf {
    settings.with_file_name("admin-password.hash")
}

/// Reads the admin password file. Without one, the settings file's hash (`from_ini`) is
/// moved into it; a settings file that cannot be read at all (`Err`) leaves the guard
/// unknown, so locked.
fn load_admin_guard(file: &Path, from_ini: Result<Option<String>, String>) -> AdminGuard {
    let shown = file.display();
    match crate::storage::read_small(file, 4096) {
        Ok(bytes) => match std::str::from_utf8(&bytes).map(str::trim) {
            Ok(hash) if crate::access::is_valid_hash(hash) => AdminGuard::Hash(hash.to_string()),
            _ => AdminGuard::Locked(format!(
                "the admin password file {shown} does not hold a password hash; settings stay locked until it is removed (then set a password again) or PHOTO_PACS_ADMIN_PASSWORD is set"
            )),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => match from_ini {
            Ok(None) => AdminGuard::Open,
            Ok(Some(hash)) => {
                if let Err(e) = write_atomically(file, format!("{hash}\n").as_bytes()) {
                    log::warn!("cannot write the admin password file {shown}: {e}");
                }
                AdminGuard::Hash(hash)
            }
            Err(reason) => AdminGuard::Locked(reason),
        },
        Err(e) => AdminGuard::Locked(format!(
            "the admin password file {shown} cannot be read ({e}); settings stay locked until it is fixed or PHOTO_PACS_ADMIN_PASSWORD is set"
        )),
    }
}

/// The admin hash in a settings file that does not parse as a whole, when its line is
/// intact: the password it set must keep guarding the settings.
fn salvage_admin_hash(bytes: &[u8]) -> Option<String> {
    String::from_utf8_lossy(bytes).lines().find_map(|line| {
        let (name, value) = line.split_once('=')?;
        let value = value.trim();
        (name.trim() == ADMIN_HASH.1 && crate::access::is_valid_hash(value))
            .then(|| value.to_string())
    })
}

/// A key in the settings file that this version has no setting for.
#[derive(Clone, Debug, PartialEq)]
struct UnknownKey {
    section: String,
    name: String,
    value: String,
}

/// What the settings file holds.
struct FileContents {
    overrides: BTreeMap<Key, String>,
    unknown: Vec<UnknownKey>,
    settings: Settings,
    admin_hash: Option<String>,
}

/// `Ok(None)` when there is no file; `Err(reason)` names the line and key that is wrong.
fn read_overrides(path: &Path, defaults: &Settings) -> Result<Option<FileContents>, String> {
    read_file(path)?
        .map(|bytes| parse_bytes(&bytes, defaults))
        .transpose()
}

/// The settings file's bytes (`None`: there is none), or why it cannot be read. The file is
/// the gateway's own, a few KB: a link or anything huge is not.
fn read_file(path: &Path) -> Result<Option<Vec<u8>>, String> {
    match crate::storage::read_small(path, 1 << 20) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot be read: {e}")),
    }
}

fn parse_bytes(bytes: &[u8], defaults: &Settings) -> Result<FileContents, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_string())?;
    parse_contents(text, defaults)
}

/// The settings a settings file's text gives over `defaults`, or the reason (with its line)
/// it cannot be used. Never panics, whatever the text.
pub fn parse_settings_file(text: &str, defaults: &Settings) -> Result<Settings, String> {
    parse_contents(text, defaults).map(|f| f.settings)
}

fn parse_contents(text: &str, defaults: &Settings) -> Result<FileContents, String> {
    let ini = Ini::load_from_str(text).map_err(|e| format!("line {}: {}", e.line, e.msg))?;
    let mut settings = defaults.clone();
    let mut overrides = BTreeMap::new();
    let mut unknown = Vec::new();
    let mut admin_hash = None;
    for (section, props) in ini.iter() {
        for (name, value) in props.iter() {
            let line = find_line(text, section, name);
            let Some(section) = section else {
                return Err(format!(
                    "line {line}: key {name:?} is outside any [section]"
                ));
            };
            if (section, name) == ADMIN_HASH {
                if !crate::access::is_valid_hash(value) {
                    return Err(format!(
                        "line {line}: [{section}] {name} is not an argon2 password hash"
                    ));
                }
                admin_hash = Some(value.to_string());
                continue;
            }
            // Settings files only grow (README.md, "Data on /data across updates and
            // rollbacks"): a key we do not know is a newer version's (read after a
            // rollback) or a typo. Either way the rest of the file still holds, so it is
            // kept aside rather than failing the file.
            let Some(key) = Key::from_ini(section, name) else {
                unknown.push(UnknownKey {
                    section: section.to_string(),
                    name: name.to_string(),
                    value: value.to_string(),
                });
                continue;
            };
            settings
                .apply(key, value)
                .map_err(|e| format!("line {line}: [{section}] {name} {}", e.reason))?;
            overrides.insert(key, settings.raw(key));
        }
    }
    Ok(FileContents {
        overrides,
        unknown,
        settings,
        admin_hash,
    })
}

/// The 1-based line where `name` is set in `section`, for error messages (0 if not found).
fn find_line(text: &str, section: Option<&str>, name: &str) -> usize {
    let mut current: Option<&str> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(s) = t.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            current = Some(s.trim());
        } else if current == section && t.split(['=', ':']).next().map(str::trim) == Some(name) {
            return i + 1;
        }
    }
    0
}

fn set_aside(path: &Path) -> io::Result<PathBuf> {
    let stamp = chrono::Local::now().format("%Y%m%dT%H%M%S");
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".corrupt-{stamp}"));
    let aside = PathBuf::from(aside);
    std::fs::rename(path, &aside)?;
    Ok(aside)
}

fn render_ini(
    overrides: &BTreeMap<Key, String>,
    unknown: &[UnknownKey],
    admin_hash: Option<&str>,
) -> String {
    let mut ini = Ini::new();
    for (key, value) in overrides {
        let n = key.names();
        ini.with_section(Some(n.section)).set(n.ini, value.as_str());
    }
    for k in unknown {
        ini.with_section(Some(k.section.as_str()))
            .set(k.name.as_str(), k.value.as_str());
    }
    if let Some(hash) = admin_hash {
        ini.with_section(Some(ADMIN_HASH.0)).set(ADMIN_HASH.1, hash);
    }
    let mut out = Vec::new();
    out.extend_from_slice(
        b"; Photo PACS runtime settings, written by the settings page.\n; Keys here override the PHOTO_PACS_* environment defaults.\n\n",
    );
    let opt = ini::WriteOption {
        escape_policy: ini::EscapePolicy::Reserved,
        ..Default::default()
    };
    // Writing into a Vec cannot fail.
    let _ = ini.write_to_opt(&mut out, opt);
    String::from_utf8_lossy(&out).into_owned()
}

/// Replaces `path` with `bytes` so that a power cut leaves either the old or the new file:
/// temp file in the same directory, fsync, rename, fsync the directory. Mode 0600 because
/// the file can hold the DICOMweb password.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomically_with_mode(path, bytes, 0o600)
}

/// [`write_atomically`] with the new file's mode (less the umask). The temp file is created
/// exclusively, so a symlink planted at its name in a directory someone else can write to
/// (root provisioning the service's state directory) is never followed.
pub fn write_atomically_with_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    crate::storage::replace(path, bytes, mode, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_symlink_at_the_temp_name_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        let path = tmp.path().join("settings.ini");
        let planted = tmp
            .path()
            .join(format!("settings.ini.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        write_atomically_with_mode(&path, b"[pacs]\n", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[pacs]\n");
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
        assert!(!planted.exists());
    }

    impl SettingsStore {
        async fn update_unchecked(
            &self,
            update: &Map<String, Value>,
        ) -> Result<Arc<Settings>, UpdateError> {
            self.update(update, |_| Vec::new()).await
        }
    }

    #[tokio::test]
    async fn a_whole_settings_check_refuses_only_new_problems() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path());
        let port_is_odd = |s: &Settings| {
            if s.pacs_port % 2 == 1 {
                vec![FieldError {
                    field: "pacsPort".into(),
                    message: "odd".into(),
                }]
            } else {
                Vec::new()
            }
        };
        let err = store
            .update(json!({"pacsPort": 11113}).as_object().unwrap(), port_is_odd)
            .await
            .unwrap_err();
        assert!(matches!(err, UpdateError::Invalid(ref f) if f[0].field == "pacsPort"));
        // The default port 104 is even; make it odd without the check, then change something else.
        store
            .update_unchecked(json!({"pacsPort": 11113}).as_object().unwrap())
            .await
            .unwrap();
        store
            .update(
                json!({"pacsCalledAET": "OTHER"}).as_object().unwrap(),
                port_is_odd,
            )
            .await
            .unwrap();
    }

    fn store_in(dir: &Path) -> SettingsStore {
        SettingsStore::load(dir.join("settings.ini"), Settings::default())
    }

    #[tokio::test]
    async fn update_saves_and_a_new_load_sees_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path());
        let tricky = "p;a#s=s:w\\o\"r'd [x] ü";
        let update =
            json!({"pacsCalledAET": "ORTHANC", "pacsPort": 4242, "dicomwebPassword": tricky});
        store
            .update_unchecked(update.as_object().unwrap())
            .await
            .unwrap();
        let text = std::fs::read_to_string(dir.path().join("settings.ini")).unwrap();
        assert!(text.contains("called_aet=ORTHANC"), "{text}");
        assert!(
            !text.contains("host="),
            "untouched keys stay out of the file: {text}"
        );

        let again = store_in(dir.path());
        assert!(again.problem().is_none(), "{:?}", again.problem());
        let s = again.current();
        assert_eq!(s.pacs_called_aet, "ORTHANC");
        assert_eq!(s.pacs_port, 4242);
        assert_eq!(s.dicomweb_password.expose(), tricky);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("settings.ini"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[tokio::test]
    async fn a_refused_update_leaves_file_and_memory_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path());
        store
            .update_unchecked(json!({"pacsPort": 11112}).as_object().unwrap())
            .await
            .unwrap();
        let before = std::fs::read(dir.path().join("settings.ini")).unwrap();
        let err = store
            .update_unchecked(
                json!({"pacsCalledAET": "X", "pacsPort": 70000})
                    .as_object()
                    .unwrap(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, UpdateError::Invalid(ref f) if f[0].field == "pacsPort"));
        assert_eq!(
            std::fs::read(dir.path().join("settings.ini")).unwrap(),
            before
        );
        assert_eq!(store.current().pacs_called_aet, "PACS");
    }

    #[test]
    fn a_corrupt_file_is_set_aside_with_its_line_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.ini");
        std::fs::write(&path, "[pacs]\nhost=10.0.0.1\nport=abc\n").unwrap();
        let store = store_in(dir.path());
        let problem = store.problem().unwrap();
        assert!(problem.contains("line 3"), "{problem}");
        assert!(problem.contains("port"), "{problem}");
        assert!(
            !path.exists(),
            "the bad file must be moved, not left to be overwritten"
        );
        let aside: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(store.current().pacs_host, "127.0.0.1", "runs on defaults");
    }

    #[test]
    fn syntax_errors_are_problems_too() {
        for (text, expect) in [
            ("[pacs\nhost=x\n", "line"),
            ("host=x\n", "outside any [section]"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("settings.ini"), text).unwrap();
            let problem = store_in(dir.path()).problem().unwrap();
            assert!(problem.contains(expect), "{text:?}: {problem}");
        }
    }

    #[tokio::test]
    async fn setting_a_key_back_to_its_default_removes_the_override() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path());
        store
            .update_unchecked(json!({"pacsPort": 11112}).as_object().unwrap())
            .await
            .unwrap();
        store
            .update_unchecked(json!({"pacsPort": 104}).as_object().unwrap())
            .await
            .unwrap();
        let text = std::fs::read_to_string(dir.path().join("settings.ini")).unwrap();
        assert!(!text.contains("port"), "{text}");
    }

    #[tokio::test]
    async fn a_broken_settings_file_never_loses_the_admin_password() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path());
        let hash = crate::access::hash_password("correct horse").unwrap();
        store.set_admin_hash(hash.clone()).await.unwrap();
        let ini = dir.path().join("settings.ini");
        let text = std::fs::read_to_string(&ini).unwrap();
        assert!(
            text.contains("admin_password_hash"),
            "kept in the INI too, for older versions"
        );
        std::fs::write(&ini, format!("{text}\n[pacs]\nport=not a port\n")).unwrap();
        let again = store_in(dir.path());
        assert!(again.problem().is_some());
        assert_eq!(again.admin_guard(), AdminGuard::Hash(hash.clone()));

        // Without its own file (an older version wrote only the INI), the hash is salvaged
        // from the broken INI and moved into one.
        std::fs::remove_file(admin_hash_path(&ini)).unwrap();
        std::fs::write(
            &ini,
            format!("[pacs]\nport=not a port\n[security]\nadmin_password_hash={hash}\n"),
        )
        .unwrap();
        assert_eq!(
            store_in(dir.path()).admin_guard(),
            AdminGuard::Hash(hash.clone())
        );
        assert!(admin_hash_path(&ini).exists());
    }

    /// What a newer version may add (a key, a section, one in [security]) is ignored here,
    /// costs none of the known settings, and is still in the file after this version saves.
    #[tokio::test]
    async fn unknown_keys_are_ignored_and_kept_when_the_file_is_saved() {
        let dir = tempfile::tempdir().unwrap();
        let ini = dir.path().join("settings.ini");
        let newer = "[pacs]\nhost=10.1.2.3\nretry_jitter=0.25\n\n[security]\nsession_pin_digits=8\n\n[update]\nchannel=stable\n";
        std::fs::write(&ini, newer).unwrap();
        let store = store_in(dir.path());
        assert!(store.problem().is_none(), "{:?}", store.problem());
        assert_eq!(store.current().pacs_host, "10.1.2.3");
        assert_eq!(
            SettingsStore::peek(&ini, &Settings::default())
                .unwrap()
                .pacs_host,
            "10.1.2.3"
        );
        store
            .update_unchecked(json!({"pacsPort": 4242}).as_object().unwrap())
            .await
            .unwrap();
        let hash = crate::access::hash_password("correct horse").unwrap();
        store.set_admin_hash(hash.clone()).await.unwrap();
        let text = std::fs::read_to_string(&ini).unwrap();
        let again = Ini::load_from_str(&text).unwrap();
        for (section, name, value) in [
            ("pacs", "host", "10.1.2.3"),
            ("pacs", "port", "4242"),
            ("pacs", "retry_jitter", "0.25"),
            ("security", "session_pin_digits", "8"),
            ("security", "admin_password_hash", hash.as_str()),
            ("update", "channel", "stable"),
        ] {
            assert_eq!(again.get_from(Some(section), name), Some(value), "{text}");
        }
        let reloaded = store_in(dir.path());
        assert!(reloaded.problem().is_none());
        assert_eq!(reloaded.current().pacs_port, 4242);
    }

    #[test]
    fn an_unreadable_security_state_locks_the_settings() {
        let dir = tempfile::tempdir().unwrap();
        let ini = dir.path().join("settings.ini");
        std::fs::write(admin_hash_path(&ini), "not a hash\n").unwrap();
        assert!(matches!(
            store_in(dir.path()).admin_guard(),
            AdminGuard::Locked(_)
        ));

        let dir = tempfile::tempdir().unwrap();
        // A settings "file" that cannot be read, and no password file: unknown, so locked.
        std::fs::create_dir(dir.path().join("settings.ini")).unwrap();
        assert!(matches!(
            store_in(dir.path()).admin_guard(),
            AdminGuard::Locked(_)
        ));

        let dir = tempfile::tempdir().unwrap();
        assert_eq!(store_in(dir.path()).admin_guard(), AdminGuard::Open);
    }
}
