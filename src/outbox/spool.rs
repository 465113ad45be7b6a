//! The outbox on disk: one directory per study under DICOM_DIR. A study is built in
//! `.intake-<id>/` (each file written once and synced), its record written, the commit
//! record written last, then the directory renamed to `<id>/`. Whatever start-up finds
//! half-built is removed; whatever it finds committed is delivered.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::record::{Record, State};
use crate::storage::{self, sync_dir, write_new_synced};

/// Written last: a study directory without it was never accepted.
pub const COMMITTED: &str = "committed";
pub const RECORD: &str = "record.json";
pub const STATE: &str = "state.json";
/// Where a study is built until it is committed.
pub const INTAKE_PREFIX: &str = ".intake-";
/// Held (flock) by the gateway while it runs, so the command line does not change the
/// outbox under it.
pub const LOCK: &str = ".lock";

fn json<T: serde::Serialize>(value: &T) -> io::Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(io::Error::other)
}

/// The state is rewritten after every instance: compact, unlike the record.
pub fn write_state(dir: &Path, state: &State, sync: bool) -> io::Result<()> {
    let bytes = serde_json::to_vec(state).map_err(io::Error::other)?;
    storage::replace(&dir.join(STATE), &bytes, 0o600, sync)
}

/// Makes the state file last written (without sync) durable.
pub fn sync_state(dir: &Path) -> io::Result<()> {
    File::open(dir.join(STATE))?.sync_all()?;
    sync_dir(dir)
}

/// Commits a study built in `intake` (its objects already written and synced): the record,
/// synced, and its folder entry; then the commit record, whose folder entry is what counts;
/// then the rename to its final name. Four syncs besides the objects': each costs
/// milliseconds on an SD card, and the upload waits for them. No state file yet: a study
/// without one has had no attempt.
pub fn commit(intake: &Path, final_dir: &Path, record: &Record) -> io::Result<()> {
    write_new_synced(&intake.join(RECORD), &json(record)?)?;
    sync_dir(intake)?;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(intake.join(COMMITTED))?
        .write_all(record.id.as_bytes())?;
    sync_dir(intake)?;
    fs::rename(intake, final_dir)?;
    if let Some(parent) = final_dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// A committed study as found on disk.
pub struct Found {
    pub dir: PathBuf,
    pub record: Record,
    pub state: State,
    /// Its state file was there but unreadable, and was rebuilt from the record.
    pub state_rebuilt: bool,
}

/// What start-up found under DICOM_DIR.
#[derive(Default)]
pub struct Recovery {
    pub found: Vec<Found>,
    /// Studies a crash left half-built (never accepted), removed.
    pub incomplete_removed: usize,
    /// Folders with DICOM files but no commit record: kept by an earlier version after a
    /// failed delivery. Left alone; the admin decides.
    pub legacy: Vec<PathBuf>,
    /// Committed studies whose record cannot be read: left alone, reported.
    pub unreadable: Vec<PathBuf>,
}

/// Scans `root`. With `repair` (the gateway's start-up), half-built studies are removed, a
/// commit the crash left before its rename is finished, and stale temporary files go;
/// without (the command line's list while a gateway runs), nothing is changed and only
/// committed studies are read.
pub fn scan(root: &Path, repair: bool) -> io::Result<Recovery> {
    let mut out = Recovery::default();
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let mut dir = entry.path();
        match name.strip_prefix(INTAKE_PREFIX) {
            Some(_) if !repair => continue,
            Some(_) if !dir.join(COMMITTED).is_file() => {
                fs::remove_dir_all(&dir)?;
                out.incomplete_removed += 1;
                continue;
            }
            Some(id) => {
                // Committed, but the crash came before the rename: finish it.
                let final_dir = root.join(id);
                fs::rename(&dir, &final_dir)?;
                sync_dir(root)?;
                dir = final_dir;
            }
            None if name.starts_with('.') => continue,
            None => {}
        }
        if !dir.join(COMMITTED).is_file() {
            out.legacy.push(dir);
            continue;
        }
        if repair {
            remove_stale_temp_files(&dir)?;
        }
        match read_study(dir) {
            Ok(found) => out.found.push(found),
            Err(dir) => out.unreadable.push(dir),
        }
    }
    out.found.sort_by_key(|f| f.record.seq);
    Ok(out)
}

/// A committed study's record and state; its folder back when the record is unreadable.
fn read_study(dir: PathBuf) -> Result<Found, PathBuf> {
    let Some(record) = fs::read(dir.join(RECORD))
        .ok()
        .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
    else {
        return Err(dir);
    };
    // No state file: no attempt was ever recorded, the study starts from its record.
    let (state, state_rebuilt) = match fs::read(dir.join(STATE)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => (State::new(&record), false),
        read => match read
            .ok()
            .and_then(|b| serde_json::from_slice::<State>(&b).ok())
            .filter(|s| s.instances.len() == record.instances.len())
        {
            Some(s) => (s, false),
            None => (State::new(&record), true),
        },
    };
    Ok(Found {
        dir,
        record,
        state,
        state_rebuilt,
    })
}

/// State files half-written by a process that was killed.
fn remove_stale_temp_files(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if storage::is_temp_of(&entry.file_name().to_string_lossy(), STATE) {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::record::{RECORD_VERSION, RecordInstance};
    use crate::pacs::Destination;
    use crate::storage::create_private_dir;
    use std::os::unix::fs::PermissionsExt;

    fn record(id: &str, seq: u64) -> Record {
        Record {
            version: RECORD_VERSION,
            id: id.into(),
            seq,
            created: chrono::Utc::now(),
            idempotency_key: None,
            study_instance_uid: "2.25.1".into(),
            series_instance_uid: "2.25.2".into(),
            destination: Destination::Mock {
                called_aet: "PACS".into(),
                host: "127.0.0.1".into(),
                port: 104,
            },
            instances: vec![RecordInstance {
                index: 1,
                sop_instance_uid: "2.25.3".into(),
                sop_class_uid: crate::dicom::uid::SECONDARY_CAPTURE.into(),
                transfer_syntax: "1.2.840.10008.1.2".into(),
                file: "001.dcm".into(),
            }],
        }
    }

    fn build(root: &Path, id: &str, seq: u64, committed: bool) -> PathBuf {
        let intake = root.join(format!("{INTAKE_PREFIX}{id}"));
        create_private_dir(&intake).unwrap();
        write_new_synced(&intake.join("001.dcm"), b"DICM").unwrap();
        if committed {
            let r = record(id, seq);
            commit(&intake, &root.join(id), &r).unwrap();
            root.join(id)
        } else {
            intake
        }
    }

    #[test]
    fn start_up_keeps_committed_studies_removes_half_built_ones_and_leaves_old_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        build(root, "b", 2, true);
        build(root, "a", 1, true);
        build(root, "half", 3, false);
        // Committed, but the crash came before the rename.
        let late = root.join(format!("{INTAKE_PREFIX}late"));
        create_private_dir(&late).unwrap();
        let r = record("late", 4);
        write_new_synced(&late.join(RECORD), &serde_json::to_vec(&r).unwrap()).unwrap();
        write_new_synced(&late.join(COMMITTED), b"late").unwrap();
        // An earlier version's kept batch.
        let legacy = root.join("0123456789abcdef");
        fs::create_dir(&legacy).unwrap();
        fs::write(legacy.join("001.dcm"), b"DICM").unwrap();

        let found = scan(root, true).unwrap();
        let ids: Vec<_> = found.found.iter().map(|f| f.record.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "late"], "in upload order");
        assert_eq!(found.incomplete_removed, 1);
        assert!(!root.join(format!("{INTAKE_PREFIX}half")).exists());
        assert!(root.join("late").join(COMMITTED).is_file());
        assert!(
            !found.found[2].state_rebuilt,
            "no state file yet is no attempt yet, not damage"
        );
        // A state file that cannot be read is damage: rebuilt from the record, and said so.
        fs::write(root.join("a").join(STATE), b"{not json").unwrap();
        let again = scan(root, true).unwrap();
        assert!(again.found[0].state_rebuilt);
        assert_eq!(found.legacy, std::slice::from_ref(&legacy));
        assert!(legacy.join("001.dcm").is_file(), "never deleted");
    }

    #[test]
    fn files_and_folders_are_private_whatever_the_umask() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = build(tmp.path(), "x", 1, true);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        for f in ["001.dcm", RECORD, COMMITTED] {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }
        write_state(&dir, &State::new(&record("x", 1)), false).unwrap();
        assert_eq!(mode(&dir.join(STATE)), 0o600);
    }
}
