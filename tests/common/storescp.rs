//! A real DICOM storage SCP for the interop tests: dcmtk's `storescp` on a loopback port,
//! with optional TLS and negative behaviours (refused association, failure status, abort,
//! slowness), plus a TCP listener that never answers, test TLS material made with the
//! `openssl` CLI, and the loopback-only plumbing shared with `orthanc.rs`.
//!
//! Loopback only: dcmtk 3.6.7's storescp (Debian 12) has no bind-address option and listens
//! on all interfaces, and so does Orthanc. Both are therefore started with an `LD_PRELOAD`
//! shim (`tests/peers/loopback_only.c`, compiled with `cc` on first use) that rewrites every
//! `bind()` to 127.0.0.1 (IPv6: ::1), and after start-up [`assert_loopback_only`] checks in
//! `/proc` that every listening socket of the process is on loopback.
//!
//! Beware: pynetdicom installs scripts named `storescp`, `echoscu`, `storescu`... (e.g. as
//! pyenv shims early in `PATH`); [`dcmtk_tool`] skips them and finds dcmtk's programs.
#![allow(dead_code)]

use std::collections::HashSet;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a started server may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Finding the programs
// ---------------------------------------------------------------------------------------

/// True when running under CI, where a missing peer must fail rather than skip.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Reports a missing peer: panics under CI, else prints "SKIPPED" and returns `None`.
pub fn missing_peer<T>(what: &str, package: &str) -> Option<T> {
    assert!(
        !under_ci(),
        "{what} is missing under CI: install the Debian package {package}"
    );
    eprintln!("SKIPPED: {what} not found (Debian package {package}); this test did not run");
    None
}

/// The path of the dcmtk program `name` (`storescp`, `echoscu`, `storescu`, `img2dcm`...),
/// or `None` (with the reason printed) when dcmtk is missing and we are not under CI.
///
/// Same-named programs that are not dcmtk's (pynetdicom's apps) are skipped: the first
/// program in `PATH` whose `--version` mentions dcmtk wins.
pub fn dcmtk_tool(name: &str) -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    let found = candidates.into_iter().find(|p| {
        // Skip scripts (pynetdicom's apps, pyenv shims) without running them: slow.
        let mut magic = [0u8; 2];
        let script = std::fs::File::open(p)
            .and_then(|mut f| f.read_exact(&mut magic))
            .map(|()| &magic == b"#!")
            .unwrap_or(true);
        !script
            && Command::new(p)
                .arg("--version")
                .stdin(Stdio::null())
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("$dcmtk:"))
    });
    match found {
        Some(p) => Some(p),
        None => missing_peer(&format!("dcmtk's {name}"), "dcmtk"),
    }
}

// ---------------------------------------------------------------------------------------
// Loopback-only plumbing (shared with orthanc.rs)
// ---------------------------------------------------------------------------------------

const LOOPBACK_SHIM_SOURCE: &str = include_str!("../peers/loopback_only.c");

/// The `LD_PRELOAD` library that forces every `bind()` of the process onto loopback,
/// compiled with `cc` once per test binary into Cargo's target tmp directory.
pub fn loopback_only_preload() -> PathBuf {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        // Name by content so an edited source is rebuilt; write then rename so that test
        // binaries running in parallel never load a half-written library.
        let hash = LOOPBACK_SHIM_SOURCE
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let so = dir.join(format!("loopback_only-{hash:016x}.so"));
        if so.is_file() {
            return so;
        }
        let src = dir.join(format!("loopback_only-{hash:016x}.c"));
        std::fs::write(&src, LOOPBACK_SHIM_SOURCE)
            .unwrap_or_else(|e| panic!("write {}: {e}", src.display()));
        let tmp = dir.join(format!(
            "loopback_only-{hash:016x}.{}.so.tmp",
            std::process::id()
        ));
        let out = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&tmp)
            .arg(&src)
            .arg("-ldl")
            .output()
            .expect("run `cc` to build the loopback-only bind shim (a C compiler is needed)");
        assert!(
            out.status.success(),
            "cc failed to build the loopback-only bind shim:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&tmp, &so)
            .unwrap_or_else(|e| panic!("rename {} to {}: {e}", tmp.display(), so.display()));
        so
    })
    .clone()
}

/// A port that was free on 127.0.0.1 a moment ago (the usual race applies: callers retry
/// when the server then fails to bind it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a probe listener on 127.0.0.1:0")
        .port()
}

/// The TCP sockets in LISTEN state held by process `pid` (Linux `/proc`).
pub fn listening_sockets(pid: u32) -> Vec<SocketAddr> {
    let inodes: HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|target| {
                    let t = target.to_str()?;
                    t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
                })
                .collect()
        })
        .unwrap_or_default();
    let mut found = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            if *state != "0A" || !inode.parse().is_ok_and(|i: u64| inodes.contains(&i)) {
                continue;
            }
            if let Some(addr) = parse_proc_addr(local) {
                found.push(addr);
            }
        }
    }
    found
}

/// Parses `/proc/net/tcp{,6}` addresses: "0100007F:2B67" (IPv4) or 32 hex digits (IPv6),
/// each 32-bit word in host byte order.
fn parse_proc_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<[u8; 4]> = (0..ip.len() / 8)
        .map(|i| u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16).map(u32::to_ne_bytes))
        .collect::<Result<_, _>>()
        .ok()?;
    let ip = match words.len() {
        1 => IpAddr::V4(Ipv4Addr::from(words[0])),
        4 => {
            let bytes: [u8; 16] = words.concat().try_into().ok()?;
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Panics unless every listening socket of `pid` is on loopback (127.0.0.1 or ::1).
pub fn assert_loopback_only(pid: u32, what: &str) {
    let bad: Vec<SocketAddr> = listening_sockets(pid)
        .into_iter()
        .filter(|a| !a.ip().is_loopback())
        .collect();
    assert!(
        bad.is_empty(),
        "{what} (pid {pid}) listens beyond loopback on {bad:?}: the LD_PRELOAD shim did not apply"
    );
}

/// The output of a child process, collected by reader threads.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<String>>);

impl Logs {
    /// Collects the child's piped stdout and stderr.
    pub fn capture(child: &mut Child) -> Logs {
        let logs = Logs::default();
        if let Some(out) = child.stdout.take() {
            logs.drain(out);
        }
        if let Some(err) = child.stderr.take() {
            logs.drain(err);
        }
        logs
    }

    fn drain(&self, mut pipe: impl Read + Send + 'static) {
        let sink = self.0.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]);
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&text);
            }
        });
    }

    pub fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Why a server did not come up.
pub enum StartError {
    /// It exited; its log says why (e.g. the port was taken in the meantime).
    Exited(String),
    /// It did not listen in time.
    Timeout,
}

/// Waits until `child` listens on all `ports`, then checks it listens on loopback only.
pub fn wait_listening(
    child: &mut Child,
    ports: &[u16],
    timeout: Duration,
    what: &str,
) -> Result<(), StartError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child
            .try_wait()
            .unwrap_or_else(|e| panic!("wait for {what}: {e}"))
        {
            return Err(StartError::Exited(status.to_string()));
        }
        let listening = listening_sockets(child.id());
        if ports
            .iter()
            .all(|p| listening.iter().any(|a| a.port() == *p))
        {
            assert_loopback_only(child.id(), what);
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(StartError::Timeout);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGTERM to `child`, waits up to `grace`, then kills it.
pub fn terminate(child: &mut Child, grace: Duration) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

// ---------------------------------------------------------------------------------------
// storescp
// ---------------------------------------------------------------------------------------

/// How the SCP treats associations and C-STORE requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Behaviour {
    /// Accept and store every object (status 0x0000).
    #[default]
    Store,
    /// Accept and answer success but store nothing (`--ignore`).
    Discard,
    /// Answer every C-STORE with the failure status 0xA700 "Refused: Out of Resources":
    /// the output directory is removed once storescp is up, so writing the file fails.
    /// (dcmtk 3.6.7 has no option to choose a status.)
    FailEveryStore,
    /// Reject every association request (A-ASSOCIATE-RJ; `--refuse`).
    RefuseAssociation,
    /// Abort the association (A-ABORT) after the C-STORE-RQ, before the response
    /// (`--abort-after`).
    AbortAfterStoreRq,
    /// Abort the association while the C-STORE-RQ data is being received (`--abort-during`).
    AbortDuringStoreRq,
    /// Wait this many seconds after storing, before the response (`--sleep-after`).
    SleepAfterStore(u32),
    /// Wait this many seconds while receiving the data (`--sleep-during`).
    SleepDuringStore(u32),
}

/// Whether the TLS SCP asks the SCU for a certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PeerCert {
    /// Verify the client certificate; fail without one (`-rc`, dcmtk's default).
    #[default]
    Require,
    /// Verify the client certificate if one is sent (`-vc`).
    VerifyIfPresent,
    /// Do not ask for a client certificate (`-ic`).
    Ignore,
}

/// TLS settings of the SCP (dcmtk `+tls key cert`, `+cf ca`, `-rc`/`-vc`/`-ic`).
#[derive(Clone, Debug)]
pub struct ScpTls {
    pub key: PathBuf,
    pub cert: PathBuf,
    /// CA certificates trusted to verify client certificates (`+cf`).
    pub trusted: Vec<PathBuf>,
    pub peer_cert: PeerCert,
}

impl ScpTls {
    /// The server certificate of `material`, trusting its CA, requiring a client cert.
    pub fn from_material(material: &TlsMaterial) -> ScpTls {
        ScpTls {
            key: material.server_key.clone(),
            cert: material.server_cert.clone(),
            trusted: vec![material.ca_cert.clone()],
            peer_cert: PeerCert::Require,
        }
    }

    pub fn peer_cert(mut self, policy: PeerCert) -> ScpTls {
        self.peer_cert = policy;
        self
    }
}

/// How to start [`StoreScp`].
#[derive(Clone, Debug)]
pub struct StoreScpConfig {
    /// The SCP's AE title (`-aet`); storescp does not check the called AE title.
    pub aet: String,
    /// `Some(true)` sets `TCP_NODELAY=1` in storescp's environment, `Some(false)`
    /// `TCP_NODELAY=0` (dcmtk then leaves Nagle on); `None` leaves the environment alone.
    pub tcp_nodelay: Option<bool>,
    pub tls: Option<ScpTls>,
    pub behaviour: Behaviour,
    /// `-v` (default): the log then shows associations, presentation contexts and files.
    pub verbose: bool,
    /// More storescp options, placed before the port.
    pub extra_args: Vec<String>,
    /// Listen on this port (a PACS that comes back where it was) instead of a free one.
    pub port: Option<u16>,
    /// Write into this folder (kept across restarts) instead of a fresh temp folder.
    pub output_dir: Option<PathBuf>,
}

impl StoreScpConfig {
    pub fn new(aet: &str) -> StoreScpConfig {
        StoreScpConfig {
            aet: aet.to_string(),
            tcp_nodelay: None,
            tls: None,
            behaviour: Behaviour::Store,
            verbose: true,
            extra_args: Vec::new(),
            port: None,
            output_dir: None,
        }
    }

    pub fn port(mut self, port: u16) -> StoreScpConfig {
        self.port = Some(port);
        self
    }

    pub fn output_dir(mut self, dir: &Path) -> StoreScpConfig {
        self.output_dir = Some(dir.to_path_buf());
        self
    }

    pub fn tls(mut self, tls: ScpTls) -> StoreScpConfig {
        self.tls = Some(tls);
        self
    }

    pub fn behaviour(mut self, behaviour: Behaviour) -> StoreScpConfig {
        self.behaviour = behaviour;
        self
    }

    pub fn tcp_nodelay(mut self, on: bool) -> StoreScpConfig {
        self.tcp_nodelay = Some(on);
        self
    }

    pub fn arg(mut self, arg: &str) -> StoreScpConfig {
        self.extra_args.push(arg.to_string());
        self
    }
}

/// A running dcmtk `storescp` on 127.0.0.1; killed on drop.
///
/// It accepts every storage SOP class dcmtk knows and every transfer syntax it supports
/// (`+xa`, so JPEG-compressed objects are stored as sent), handles one association at a
/// time, and writes each object as `<output_dir>/<modality>.<SOP Instance UID>.dcm`.
pub struct StoreScp {
    child: Child,
    port: u16,
    aet: String,
    dir: tempfile::TempDir,
    out_dir: PathBuf,
    logs: Logs,
}

impl StoreScp {
    /// Starts `storescp` (the path from [`dcmtk_tool`]) and waits until it listens.
    pub fn start(storescp: &Path, config: StoreScpConfig) -> StoreScp {
        let dir = tempfile::Builder::new()
            .prefix("storescp-")
            .tempdir()
            .expect("create a temp dir for storescp");
        let out_dir = config
            .output_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("received"));
        let mut last_error = String::new();
        for _attempt in 0..3 {
            std::fs::create_dir_all(&out_dir)
                .unwrap_or_else(|e| panic!("create {}: {e}", out_dir.display()));
            let port = config.port.unwrap_or_else(free_port);
            let mut cmd = Command::new(storescp);
            cmd.env("LD_PRELOAD", loopback_only_preload())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            if let Some(on) = config.tcp_nodelay {
                cmd.env("TCP_NODELAY", if on { "1" } else { "0" });
            }
            if config.verbose {
                cmd.arg("-v");
            }
            cmd.args(["+xa", "-aet", &config.aet, "-fe", ".dcm", "-od"])
                .arg(&out_dir);
            match &config.behaviour {
                Behaviour::Store | Behaviour::FailEveryStore => {}
                Behaviour::Discard => {
                    cmd.arg("--ignore");
                }
                Behaviour::RefuseAssociation => {
                    cmd.arg("--refuse");
                }
                Behaviour::AbortAfterStoreRq => {
                    cmd.arg("--abort-after");
                }
                Behaviour::AbortDuringStoreRq => {
                    cmd.arg("--abort-during");
                }
                Behaviour::SleepAfterStore(s) => {
                    cmd.args(["--sleep-after", &s.to_string()]);
                }
                Behaviour::SleepDuringStore(s) => {
                    cmd.args(["--sleep-during", &s.to_string()]);
                }
            }
            if let Some(tls) = &config.tls {
                // `-pw`: the keys are not encrypted; never prompt on stdin.
                cmd.arg("+tls").arg(&tls.key).arg(&tls.cert).arg("-pw");
                for ca in &tls.trusted {
                    cmd.arg("+cf").arg(ca);
                }
                cmd.arg(match tls.peer_cert {
                    PeerCert::Require => "-rc",
                    PeerCert::VerifyIfPresent => "-vc",
                    PeerCert::Ignore => "-ic",
                });
            }
            cmd.args(&config.extra_args).arg(port.to_string());
            let mut child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", storescp.display()));
            let logs = Logs::capture(&mut child);
            match wait_listening(&mut child, &[port], START_TIMEOUT, "storescp") {
                Ok(()) => {
                    if config.behaviour == Behaviour::FailEveryStore {
                        std::fs::remove_dir(&out_dir).unwrap_or_else(|e| {
                            panic!("remove {} (to fail stores): {e}", out_dir.display())
                        });
                    }
                    return StoreScp {
                        child,
                        port,
                        aet: config.aet,
                        dir,
                        out_dir,
                        logs,
                    };
                }
                Err(StartError::Exited(status)) => {
                    // Let the reader threads drain, then retry: the port may have been
                    // taken between probing and binding.
                    std::thread::sleep(Duration::from_millis(50));
                    last_error = format!("storescp exited ({status}):\n{}", logs.text());
                    if !logs.text().contains("Address already in use") {
                        break;
                    }
                    if config.port.is_some() {
                        // The port is ours to reuse: a socket of the last run may linger.
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
                Err(StartError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "storescp did not listen on 127.0.0.1:{port} within {START_TIMEOUT:?}:\n{}",
                        logs.text()
                    );
                }
            }
        }
        panic!("storescp did not start: {last_error}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// "127.0.0.1:PORT".
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn aet(&self) -> &str {
        &self.aet
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where received objects are written (absent with [`Behaviour::FailEveryStore`]).
    pub fn output_dir(&self) -> &Path {
        &self.out_dir
    }

    /// The received `.dcm` files, sorted by name.
    pub fn received_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.out_dir)
            .map(|dir| {
                dir.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    /// Waits until at least `count` files were received; panics with the log after `timeout`.
    pub fn wait_for_files(&self, count: usize, timeout: Duration) -> Vec<PathBuf> {
        let deadline = Instant::now() + timeout;
        loop {
            let files = self.received_files();
            if files.len() >= count {
                // storescp writes a file before answering, but give a file being written
                // by a slow association a moment to be complete.
                std::thread::sleep(Duration::from_millis(50));
                return self.received_files();
            }
            assert!(
                Instant::now() < deadline,
                "storescp received {} of {count} files within {timeout:?}:\n{}",
                files.len(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// storescp's stdout and stderr so far.
    pub fn logs(&self) -> String {
        self.logs.text()
    }

    /// The files storescp wrote, in the order it received them (from its `-v` log).
    pub fn arrival_order(&self) -> Vec<String> {
        self.logs()
            .lines()
            .filter_map(|l| l.split("toring DICOM file: ").nth(1))
            // Progress dots of the next object may follow on the same line.
            .map(|f| match f.find(".dcm") {
                Some(end) => f[..end + 4].to_string(),
                None => f.trim().to_string(),
            })
            .collect()
    }

    /// Stops it at once, as a PACS that goes down.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.logs()
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The temp directory holding the output directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for StoreScp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// A peer that accepts TCP and never answers
// ---------------------------------------------------------------------------------------

/// Keeps a loopback listener that accepts connections and holds them open without ever
/// reading or writing; dropping it closes the listener and every accepted connection.
pub struct SilentListener {
    port: u16,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SilentListener {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many connections were accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for SilentListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A listener on 127.0.0.1 that accepts TCP connections and never answers (for timeouts).
pub fn silent_listener() -> (u16, SilentListener) {
    listener(true)
}

/// A listener on 127.0.0.1 that accepts TCP connections and closes each at once, without a
/// byte: a PACS host whose port forwarder or proxy is up while the PACS behind it is not.
pub fn closing_listener() -> (u16, SilentListener) {
    listener(false)
}

fn listener(hold: bool) -> (u16, SilentListener) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a silent listener on 127.0.0.1");
    let port = listener
        .local_addr()
        .expect("local address of the silent listener")
        .port();
    listener
        .set_nonblocking(true)
        .expect("make the silent listener non-blocking");
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    let thread = {
        let stop = stop.clone();
        let accepted = accepted.clone();
        std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if hold {
                            held.push(stream);
                        }
                        accepted.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        })
    };
    let guard = SilentListener {
        port,
        stop,
        accepted,
        thread: Some(thread),
    };
    (port, guard)
}

// ---------------------------------------------------------------------------------------
// TLS material
// ---------------------------------------------------------------------------------------

/// Test PKI made with the `openssl` CLI (PEM files, RSA 2048, unencrypted PKCS#8 keys,
/// valid from now for 2 days).
pub struct TlsMaterial {
    dir: tempfile::TempDir,
    /// CA "photo-pacs-test-CA".
    pub ca_key: PathBuf,
    pub ca_cert: PathBuf,
    /// CN=localhost, SAN DNS:localhost and IP:127.0.0.1, EKU serverAuth, signed by the CA.
    pub server_key: PathBuf,
    pub server_cert: PathBuf,
    /// CN "photo-pacs-test-client", EKU clientAuth, signed by the CA.
    pub client_key: PathBuf,
    pub client_cert: PathBuf,
    /// An unrelated CA "photo-pacs-other-CA" (for "wrong CA" tests).
    pub other_ca_key: PathBuf,
    pub other_ca_cert: PathBuf,
    /// A client certificate signed by the other CA (a client the SCP must not trust).
    pub other_client_key: PathBuf,
    pub other_client_cert: PathBuf,
}

const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

impl TlsMaterial {
    /// Generates the material with `openssl` (e.g. `/usr/bin/openssl`) into a temp dir that
    /// lives as long as the returned value.
    pub fn generate(openssl: &Path) -> TlsMaterial {
        let dir = tempfile::Builder::new()
            .prefix("tls-")
            .tempdir()
            .expect("create a temp dir for TLS material");
        let d = dir.path().to_path_buf();
        let cnf = d.join("openssl.cnf");
        std::fs::write(&cnf, OPENSSL_CNF).expect("write openssl.cnf");
        // One openssl command line; no argument contains spaces.
        let run = |line: &str| {
            let out = Command::new(openssl)
                .current_dir(&d)
                // Only our config: the system one must not add extensions.
                .env("OPENSSL_CONF", &cnf)
                .args(line.split_whitespace())
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("run {}: {e}", openssl.display()));
            assert!(
                out.status.success(),
                "openssl {line} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ca = |name: &str, cn: &str| {
            run(&format!(
                "req -config openssl.cnf -x509 -newkey rsa:2048 -nodes -days 2 \
                 -keyout {name}.key -out {name}.pem -subj /CN={cn} -extensions ca_ext"
            ));
        };
        let leaf = |name: &str, cn: &str, ca: &str, ext: &str, serial: u32| {
            run(&format!(
                "req -config openssl.cnf -new -newkey rsa:2048 -nodes \
                 -keyout {name}.key -out {name}.csr -subj /CN={cn}"
            ));
            run(&format!(
                "x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}.key -set_serial {serial} \
                 -days 2 -extfile openssl.cnf -extensions {ext} -out {name}.pem"
            ));
        };
        ca("ca", "photo-pacs-test-CA");
        ca("other_ca", "photo-pacs-other-CA");
        leaf("server", "localhost", "ca", "server_ext", 1001);
        leaf("client", "photo-pacs-test-client", "ca", "client_ext", 1002);
        leaf(
            "other_client",
            "photo-pacs-other-client",
            "other_ca",
            "client_ext",
            2001,
        );
        TlsMaterial {
            ca_key: d.join("ca.key"),
            ca_cert: d.join("ca.pem"),
            server_key: d.join("server.key"),
            server_cert: d.join("server.pem"),
            client_key: d.join("client.key"),
            client_cert: d.join("client.pem"),
            other_ca_key: d.join("other_ca.key"),
            other_ca_cert: d.join("other_ca.pem"),
            other_client_key: d.join("other_client.key"),
            other_client_cert: d.join("other_client.pem"),
            dir,
        }
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
