//! tests/peers/find_scp.py: a pynetdicom query SCP on a free loopback port (a worklist
//! provider that answers N matches and waits for a cancel, or a PACS that takes Study Root
//! queries only), over plain TCP or TLS, with what it printed kept for the test to read.
//! Killed when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::storescp::{PeerCert, ScpTls, free_port, under_ci, wait_listening};

pub struct FindScp {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    pub port: u16,
    pub aet: String,
}

impl FindScp {
    /// Starts it in `mode` (see the script); `None` (with the reason printed) when
    /// pynetdicom cannot start and we are not under CI.
    pub fn start(aet: &str, mode: &str) -> Option<FindScp> {
        Self::start_with(aet, mode, None)
    }

    /// [`FindScp::start`], speaking DICOM over TLS only with the server certificate of
    /// `tls`, checking client certificates against its trusted CAs as it says.
    pub fn start_tls(aet: &str, mode: &str, tls: &ScpTls) -> Option<FindScp> {
        Self::start_with(aet, mode, Some(tls))
    }

    fn start_with(aet: &str, mode: &str, tls: Option<&ScpTls>) -> Option<FindScp> {
        let python = super::peer("python3", "python3")?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/find_scp.py");
        let mut tls_args: Vec<std::ffi::OsString> = Vec::new();
        if let Some(tls) = tls {
            tls_args.extend(["--tls-cert".into(), tls.cert.clone().into()]);
            tls_args.extend(["--tls-key".into(), tls.key.clone().into()]);
            for ca in &tls.trusted {
                tls_args.extend(["--tls-ca".into(), ca.clone().into()]);
            }
            let policy = match tls.peer_cert {
                PeerCert::Require => "require",
                PeerCert::VerifyIfPresent => "verify",
                PeerCert::Ignore => "ignore",
            };
            tls_args.extend(["--peer-cert".into(), policy.into()]);
        }
        for _attempt in 0..3 {
            let port = free_port();
            let mut child = Command::new(&python)
                .arg(&script)
                .args([&port.to_string(), aet, mode])
                .args(&tls_args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start find_scp.py");
            let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
            let mut ready = String::new();
            let _ = stdout.read_line(&mut ready);
            if ready.trim() != "ready" {
                let _ = child.kill();
                let _ = child.wait();
                assert!(
                    !under_ci(),
                    "the pynetdicom query SCP did not start: pip install -r tests/peers/requirements.txt"
                );
                eprintln!(
                    "SKIPPED: the pynetdicom query SCP did not start (pip install -r tests/peers/requirements.txt); this test did not run"
                );
                return None;
            }
            // "ready" comes once the server thread runs; the socket is checked too, and
            // to be on loopback only.
            if wait_listening(&mut child, &[port], Duration::from_secs(10), "find_scp.py").is_err()
            {
                let _ = child.kill();
                let _ = child.wait();
                continue;
            }
            let lines = Arc::new(Mutex::new(Vec::new()));
            let sink = lines.clone();
            std::thread::spawn(move || {
                for line in stdout.lines() {
                    let Ok(line) = line else { break };
                    sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            });
            return Some(FindScp {
                child,
                lines,
                port,
                aet: aet.to_string(),
            });
        }
        panic!("find_scp.py did not listen on a free port in three attempts");
    }

    /// Every line printed after "ready".
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The first line starting with `prefix`, waiting for it up to `timeout` (the script
    /// prints from its own thread, possibly after our answer came).
    pub fn wait_line(&self, prefix: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.lines().into_iter().find(|l| l.starts_with(prefix)) {
                return Some(l);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The identifiers it received, as DICOM JSON.
    pub fn queries(&self) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix("query "))
            .map(|j| serde_json::from_str(j).expect("find_scp.py prints DICOM JSON"))
            .collect()
    }
}

impl Drop for FindScp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
