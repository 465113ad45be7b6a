//! Files on the data partition that must survive a crash or a power cut: private folders,
//! files written once and synced, and whole files replaced atomically.

use std::fs::{DirBuilder, File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A directory only this user can read (photos and objects are patient data), whatever
/// the umask; missing parents are made the same way.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(path)
}

/// Creates `path` (it must not exist) readable by this user only, writes `bytes`, and
/// syncs it to the card.
pub fn write_new_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The bytes of the regular file `path`, at most `max` of them. A symlink, a device, a
/// FIFO or a file over `max` is an error (`InvalidInput`) rather than followed, waited on
/// or read whole: settings may name any path, and `/dev/zero` never ends.
pub fn read_small(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
    let (file, _) = open_regular(path, OpenOptions::new().read(true)).map_err(|e| match e {
        Opened::Io(e) => e,
        Opened::Symlink => invalid("it is a symbolic link"),
        Opened::NotRegular => invalid("it is not a regular file"),
    })?;
    read_at_most(file, max)?.ok_or_else(|| invalid(&format!("it is larger than {} KB", max / 1024)))
}

/// Flags for opening a name that someone else may have planted: no link is followed, a
/// FIFO does not block, a device never becomes a controlling terminal. (`as`: the flags are
/// small positive constants; `custom_flags` takes a C int.)
pub const SAFE_OPEN: i32 = rustix::fs::OFlags::NOFOLLOW
    .union(rustix::fs::OFlags::NONBLOCK)
    .union(rustix::fs::OFlags::NOCTTY)
    .union(rustix::fs::OFlags::CLOEXEC)
    .bits() as i32;

/// Why [`open_regular`] did not hand back a file.
#[derive(Debug)]
pub enum Opened {
    Io(io::Error),
    Symlink,
    NotRegular,
}

/// Opens `path` with [`SAFE_OPEN`] and checks the handle (not the name, which can change
/// under us) is a regular file; its metadata comes with it.
pub fn open_regular(path: &Path, options: &mut OpenOptions) -> Result<(File, Metadata), Opened> {
    let file = options.custom_flags(SAFE_OPEN).open(path).map_err(|e| {
        if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
            Opened::Symlink
        } else {
            Opened::Io(e)
        }
    })?;
    let meta = file.metadata().map_err(Opened::Io)?;
    if !meta.is_file() {
        return Err(Opened::NotRegular);
    }
    Ok((file, meta))
}

/// All of `file`, or `None` when it holds more than `max` bytes. One byte over the limit
/// is read to tell a file that grew since it was opened from one that fits.
pub fn read_at_most(file: File, max: u64) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    if file.metadata()?.len() > max {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

/// Makes a directory's entries (new files, renames) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `bytes` through a temporary file renamed over it, so a reader
/// never sees half a file. With `durable`, the data and the directory entry are synced:
/// a power cut leaves the old or the new file. Without, only a crash of the process is
/// covered (the outbox's per-object state, synced later in one go). The temporary file
/// is created exclusively with `mode` (less the umask), so a symlink planted at its name
/// in a directory someone else can write to (root provisioning the service's state
/// directory) is never followed.
pub fn replace(path: &Path, bytes: &[u8], mode: u32, durable: bool) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = temp_path(path)?;
    // A temp file left by a crash of an earlier process with the same id.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if durable {
            sync_dir(&dir)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `<name>.tmp-<pid>` beside `path`.
fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?;
    let mut tmp_name = file_name.to_owned();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    Ok(path.with_file_name(tmp_name))
}

/// Whether `name` is a temporary file [`replace`] made for `file` (perhaps left by a crash).
pub fn is_temp_of(name: &str, file: &str) -> bool {
    name.strip_prefix(file)
        .is_some_and(|rest| rest.starts_with(".tmp-"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_replaced_file_is_whole_private_and_leaves_no_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state.json");
        for durable in [false, true] {
            replace(&path, b"{\"a\":1}", 0o600, durable).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":1}");
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let names: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["state.json"]);
        assert!(is_temp_of("state.json.tmp-42", "state.json"));
        assert!(!is_temp_of("state.json", "state.json"));
    }
}
