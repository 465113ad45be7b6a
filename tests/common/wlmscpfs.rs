//! A real worklist provider for the interop tests: dcmtk's `wlmscpfs` serving worklist
//! files made with `dump2dcm` from text dumps, on a loopback port (the same `LD_PRELOAD`
//! shim as storescp: it has no bind-address option either).
//!
//! Uses `super::storescp` for the shared plumbing: declare both modules side by side.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::storescp::{
    Logs, StartError, dcmtk_tool, free_port, loopback_only_preload, wait_listening,
};

const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The worklist folder wlmscpfs reads: `DIR/<called AE title>/*.wl`, beside the `lockfile`
/// it insists on.
pub struct WorklistFolder {
    dir: tempfile::TempDir,
    aet: String,
    dump2dcm: PathBuf,
}

impl WorklistFolder {
    /// `None` (with "SKIPPED" printed; a panic under CI) without dcmtk's dump2dcm.
    pub fn new(aet: &str) -> Option<WorklistFolder> {
        let dump2dcm = dcmtk_tool("dump2dcm")?;
        let dir = tempfile::Builder::new()
            .prefix("worklists-")
            .tempdir()
            .expect("create a temp dir for worklist files");
        let folder = dir.path().join(aet);
        std::fs::create_dir_all(&folder).expect("create the AE title folder");
        std::fs::write(folder.join("lockfile"), b"").expect("write the lockfile");
        Some(WorklistFolder {
            dir,
            aet: aet.to_string(),
            dump2dcm,
        })
    }

    /// The folder holding the `.wl` files (Orthanc's `Worklists.Database` too).
    pub fn files_dir(&self) -> PathBuf {
        self.dir.path().join(&self.aet)
    }

    /// The folder wlmscpfs is given (`-dfp`).
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `NAME.wl` from a dcmdump-style text `dump`; its bytes go into the file as they
    /// are, so a dump declaring ISO_IR 100 is given in Latin-1.
    pub fn add(&self, name: &str, dump: &[u8]) {
        let dump_file = self.dir.path().join(format!("{name}.dump"));
        std::fs::write(&dump_file, dump).expect("write the dump");
        let out = self.files_dir().join(format!("{name}.wl"));
        let run = Command::new(&self.dump2dcm)
            // Explicit VR Little Endian, as worklist files are usually written.
            .args(["+te"])
            .arg(&dump_file)
            .arg(&out)
            .stdin(Stdio::null())
            .output()
            .expect("run dump2dcm");
        assert!(
            run.status.success(),
            "dump2dcm {name}:\n{}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
    }
}

/// A running wlmscpfs; killed on drop.
pub struct Wlmscpfs {
    child: Child,
    port: u16,
    logs: Logs,
}

impl Wlmscpfs {
    /// Serves `folder` (AE title = its name), returning the character set each file
    /// declares (`-csk`), in one process (`-s`) so that killing it ends everything.
    pub fn start(folder: &WorklistFolder) -> Option<Wlmscpfs> {
        let wlmscpfs = dcmtk_tool("wlmscpfs")?;
        let mut last_error = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            let mut child = Command::new(&wlmscpfs)
                .env("LD_PRELOAD", loopback_only_preload())
                .env("TCP_NODELAY", "1")
                .args(["-s", "-csk", "-dfp"])
                .arg(folder.root())
                .arg(port.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", wlmscpfs.display()));
            let logs = Logs::capture(&mut child);
            match wait_listening(&mut child, &[port], START_TIMEOUT, "wlmscpfs") {
                Ok(()) => return Some(Wlmscpfs { child, port, logs }),
                Err(StartError::Exited(status)) => {
                    std::thread::sleep(Duration::from_millis(50));
                    last_error = format!("wlmscpfs exited ({status}):\n{}", logs.text());
                }
                Err(StartError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "wlmscpfs did not listen on 127.0.0.1:{port} within {START_TIMEOUT:?}:\n{}",
                        logs.text()
                    );
                }
            }
        }
        panic!("wlmscpfs did not start: {last_error}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn logs(&self) -> String {
        self.logs.text()
    }
}

impl Drop for Wlmscpfs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
