//! The SD-card image's time helper (`photo-pacs apply-time`): applies the gateway's time
//! request (`time-request.env` beside settings.ini) as root, so the gateway's own sandbox
//! stays as it is (no clock, no /etc, no D-Bus calls to timedated).
//!
//! The request lives in a directory the service user controls, so it is read the way
//! provisioning reads that directory: no link followed, no FIFO waited on, a few kilobytes
//! at most, and every value judged again by the gateway's own rules. Nothing read from the
//! file is printed unless it passed those rules; problems name the line and the key only.
//!
//! - `NTP_SERVERS` becomes a systemd-timesyncd drop-in under /run (timesyncd reads
//!   /run/systemd/timesyncd.conf.d/ as well as /etc's; /etc is on the read-only root), and
//!   timesyncd is restarted when the drop-in changed. Empty: our drop-in is removed.
//! - `TIME_ZONE` becomes /etc/localtime, a symlink straight to /usr/share/zoneinfo/<zone>:
//!   the only form systemd-timedated (and so `timedatectl`) reads a zone from. /etc is on
//!   the read-only root, so when (and only when) the zone changes the root is remounted
//!   read-write for the rename and read-only again (see image-build/README.md, "Time").
//!   Empty: the zone is left as it is.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{ProvisionError, open_checked, parse_line, write_file};
use crate::config::{parse_ntp_servers, parse_time_zone};
use crate::storage;

/// The request is two short lines and a comment; anything larger is not the gateway's.
pub const MAX_REQUEST: u64 = 4096;
/// Written beside the request after each run: what is in effect and what went wrong.
pub const APPLIED_FILE: &str = "time-applied.env";
/// Our timesyncd drop-in's name; `50-` leaves room both sides for a local one.
pub const DROP_IN_NAME: &str = "50-photo-pacs.conf";

/// Where the helper reads and writes. [`TimePaths::system`] on the box; tests use a
/// temporary tree.
#[derive(Clone, Debug)]
pub struct TimePaths {
    pub request: PathBuf,
    /// The zone files (tzdata): `<zoneinfo>/<zone>` must be a TZif file.
    pub zoneinfo: PathBuf,
    /// The symlink glibc and timedated read the zone from.
    pub localtime: PathBuf,
    /// Debian's /etc/timezone (the zone's name), kept in step when it exists.
    pub timezone_name: PathBuf,
    /// Our timesyncd drop-in.
    pub ntp_drop_in: PathBuf,
}

impl TimePaths {
    pub fn system(request: PathBuf) -> Self {
        TimePaths {
            request,
            zoneinfo: "/usr/share/zoneinfo".into(),
            localtime: "/etc/localtime".into(),
            timezone_name: "/etc/timezone".into(),
            ntp_drop_in: Path::new("/run/systemd/timesyncd.conf.d").join(DROP_IN_NAME),
        }
    }
}

/// The privileged steps, apart so tests can see them without being root.
pub trait Host {
    /// Whether the file system holding [`TimePaths::localtime`] is mounted read-only.
    fn root_read_only(&self) -> bool;
    /// Remounts it read-write (`true`) or read-only again.
    fn remount_root(&mut self, writable: bool) -> io::Result<()>;
    /// Makes timesyncd read its configuration again (a no-op when it is not running).
    fn restart_timesyncd(&mut self) -> io::Result<()>;
    /// Makes timedated read the zone again (a no-op when it is not running).
    fn restart_timedated(&mut self) -> io::Result<()>;
}

/// The real box: `/` and systemd.
pub struct System;

fn run(program: &str, args: &[&str]) -> io::Result<()> {
    let status = std::process::Command::new(program).args(args).status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{program} {} ended with {status}",
            args.join(" ")
        )))
    }
}

impl Host for System {
    fn root_read_only(&self) -> bool {
        rustix::fs::statvfs("/")
            .is_ok_and(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
    }

    fn remount_root(&mut self, writable: bool) -> io::Result<()> {
        let opts = if writable { "remount,rw" } else { "remount,ro" };
        run("mount", &["-o", opts, "/"])
    }

    fn restart_timesyncd(&mut self) -> io::Result<()> {
        // --no-block: at boot this runs before timesyncd (ordered so), and a job that waited
        // for it would wait for this unit to finish first.
        run(
            "systemctl",
            &["--no-block", "try-restart", "systemd-timesyncd.service"],
        )
    }

    fn restart_timedated(&mut self) -> io::Result<()> {
        // timedated reads /etc/localtime when it starts and exits only once idle: while a
        // client keeps asking it (the status page, `timedatectl` in a loop), it would go on
        // reporting the zone it started with.
        run(
            "systemctl",
            &["--no-block", "try-restart", "systemd-timedated.service"],
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TimeError {
    #[error(transparent)]
    File(#[from] ProvisionError),
    #[error("{path} is not UTF-8 text")]
    NotText { path: PathBuf },
    #[error("{path} is larger than {limit} bytes; it was not read")]
    TooLarge { path: PathBuf, limit: u64 },
}

/// The request's values, each already judged.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// `None`: the file did not name a usable zone (empty, or a problem was reported).
    pub time_zone: Option<String>,
    /// The servers, or empty for the system's own (the line was blank or missing).
    pub ntp_servers: Vec<String>,
    /// `false` when the NTP line was refused: then the drop-in is left as it is.
    pub ntp_ok: bool,
}

/// What one run did, in words safe for the journal.
#[derive(Debug, Default)]
pub struct TimeOutcome {
    pub applied: Vec<String>,
    pub problems: Vec<String>,
}

/// Reads the request: `None` when there is none. Refuses (by name only) a link, a FIFO, a
/// directory, a file with two names or one over [`MAX_REQUEST`].
pub fn read_request(path: &Path) -> Result<Option<String>, TimeError> {
    let Some(file) = open_checked(path, fs::OpenOptions::new().read(true))? else {
        return Ok(None);
    };
    let bytes = storage::read_at_most(file, MAX_REQUEST)
        .map_err(|source| ProvisionError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .ok_or_else(|| TimeError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_REQUEST,
        })?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| TimeError::NotText {
            path: path.to_path_buf(),
        })
}

/// Whether `zone` names a zone file under `zoneinfo`: a regular file that starts with the
/// TZif magic, reached without leaving the directory. `localtime` (Debian links it to
/// /etc/localtime itself) is refused: /etc/localtime would then point at itself.
pub fn zone_is_installed(zoneinfo: &Path, zone: &str) -> bool {
    let plain = zone.split('/').all(|part| !matches!(part, "" | "." | ".."));
    if zone == "localtime" || !plain {
        return false;
    }
    let (Ok(root), Ok(file)) = (zoneinfo.canonicalize(), zoneinfo.join(zone).canonicalize()) else {
        return false;
    };
    if !file.starts_with(&root) {
        return false;
    }
    let mut magic = [0u8; 4];
    fs::File::open(&file)
        .and_then(|mut f| {
            if f.metadata()?.is_file() {
                f.read_exact(&mut magic)
            } else {
                Err(io::ErrorKind::InvalidInput.into())
            }
        })
        .is_ok_and(|()| &magic == b"TZif")
}

/// Judges the request's lines: each value by the settings' own rules, the zone also
/// against `zoneinfo`. Problems name the line and key, never a value.
pub fn parse_request(text: &str, zoneinfo: &Path) -> (Request, Vec<String>) {
    let mut req = Request {
        ntp_ok: true,
        ..Request::default()
    };
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = format!("line {}", n + 1);
        let (name, value) = match parse_line(line) {
            None => continue,
            Some(Err(e)) => {
                problems.push(format!("{at}: {e}"));
                continue;
            }
            Some(Ok(pair)) => pair,
        };
        match name.as_str() {
            "TIME_ZONE" => {
                req.time_zone = None;
                match parse_time_zone(&value) {
                    Ok(z) if z.is_empty() => {}
                    Ok(z) if zone_is_installed(zoneinfo, &z) => req.time_zone = Some(z),
                    Ok(_) => problems.push(format!(
                        "{at}: TIME_ZONE names no time zone installed in {}; the zone is left as it is",
                        zoneinfo.display()
                    )),
                    Err(e) => problems.push(format!(
                        "{at}: TIME_ZONE {e}; the zone is left as it is"
                    )),
                }
            }
            "NTP_SERVERS" => match parse_ntp_servers(&value) {
                Ok(s) => {
                    req.ntp_servers = s.split_whitespace().map(str::to_string).collect();
                    req.ntp_ok = true;
                }
                Err(e) => {
                    req.ntp_servers.clear();
                    req.ntp_ok = false;
                    problems.push(format!(
                        "{at}: NTP_SERVERS: {e}; the NTP servers are left as they are"
                    ));
                }
            },
            // A later gateway may say more; this helper applies what it knows.
            _ => problems.push(format!("{at}: {name} is not a time setting; ignored")),
        }
    }
    (req, problems)
}

/// The zone `link` (a symlink's text) names, when it points into `zoneinfo` the way
/// timedated reads it: absolute, or relative from /etc.
fn linked_zone(link: &Path, zoneinfo: &Path) -> Option<String> {
    let relative_zoneinfo = Path::new("..").join(zoneinfo.strip_prefix("/").unwrap_or(zoneinfo));
    link.strip_prefix(zoneinfo)
        .or_else(|_| link.strip_prefix(&relative_zoneinfo))
        .ok()
        .and_then(Path::to_str)
        .map(str::to_string)
}

/// The zone /etc/localtime points to now, if it is one timedated would report.
pub fn current_zone(paths: &TimePaths) -> Option<String> {
    let link = fs::read_link(&paths.localtime).ok()?;
    linked_zone(&link, &paths.zoneinfo)
}

/// Points `paths.localtime` at `zone` by renaming a new symlink over it (atomic: a reader
/// sees the old zone or the new one), keeps /etc/timezone in step, and syncs /etc.
fn link_zone(paths: &TimePaths, zone: &str) -> io::Result<()> {
    let etc = paths.localtime.parent().unwrap_or(Path::new("/"));
    let tmp = etc.join(".localtime.photo-pacs");
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::os::unix::fs::symlink(paths.zoneinfo.join(zone), &tmp)?;
    if let Err(e) = fs::rename(&tmp, &paths.localtime) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if fs::symlink_metadata(&paths.timezone_name).is_ok_and(|m| m.is_file()) {
        storage::replace(
            &paths.timezone_name,
            format!("{zone}\n").as_bytes(),
            0o644,
            true,
        )?;
    }
    storage::sync_dir(etc)
}

/// Sets the zone when it differs from the one in effect, making the root writable only
/// for as long as that takes.
fn apply_zone(paths: &TimePaths, zone: &str, host: &mut dyn Host, out: &mut TimeOutcome) {
    if current_zone(paths).as_deref() == Some(zone) {
        out.applied
            .push(format!("time zone {zone} (already in effect)"));
        return;
    }
    let read_only = host.root_read_only();
    if read_only && let Err(e) = host.remount_root(true) {
        out.problems.push(format!(
            "time zone not set: the root file system could not be made writable ({e})"
        ));
        return;
    }
    let linked = link_zone(paths, zone);
    // Read-only again whatever happened above: a root left writable is what the image
    // is built to avoid.
    let again = if read_only {
        host.remount_root(false)
    } else {
        Ok(())
    };
    match linked {
        Ok(()) => {
            out.applied.push(format!("time zone {zone}"));
            if let Err(e) = host.restart_timedated() {
                out.problems.push(format!(
                    "time zone {zone} set, but systemd-timedated was not restarted ({e}): timedatectl may show the old zone for a while"
                ));
            }
        }
        Err(e) => out.problems.push(format!(
            "time zone not set: {}: {e}",
            paths.localtime.display()
        )),
    }
    if let Err(e) = again {
        out.problems.push(format!(
            "the root file system stayed writable until the next boot: remounting it read-only failed ({e})"
        ));
    }
}

/// The drop-in's text for `servers`; `None` for none (the system's own servers).
pub fn drop_in_text(servers: &[String]) -> Option<String> {
    (!servers.is_empty()).then(|| {
        format!(
            "# Written by photo-pacs apply-time from the gateway's ntpServers setting.\n[Time]\nNTP={}\n",
            servers.join(" ")
        )
    })
}

/// Writes or removes the drop-in when it differs from what is wanted, then restarts
/// timesyncd.
fn apply_ntp(paths: &TimePaths, servers: &[String], host: &mut dyn Host, out: &mut TimeOutcome) {
    let wanted = drop_in_text(servers);
    // Root's own file under /run: read plainly.
    let current = fs::read_to_string(&paths.ntp_drop_in).ok();
    let what = if servers.is_empty() {
        "NTP servers: the system's own".to_string()
    } else {
        format!("NTP servers {}", servers.join(" "))
    };
    if current == wanted {
        out.applied.push(format!("{what} (already in effect)"));
        return;
    }
    let written = match &wanted {
        Some(text) => paths
            .ntp_drop_in
            .parent()
            .map_or(Ok(()), fs::create_dir_all)
            .and_then(|()| storage::replace(&paths.ntp_drop_in, text.as_bytes(), 0o644, false)),
        None => fs::remove_file(&paths.ntp_drop_in).or_else(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        }),
    };
    if let Err(e) = written {
        out.problems.push(format!(
            "NTP servers not set: {}: {e}",
            paths.ntp_drop_in.display()
        ));
        return;
    }
    match host.restart_timesyncd() {
        Ok(()) => out.applied.push(what),
        Err(e) => out.problems.push(format!(
            "NTP servers written to {} but systemd-timesyncd was not restarted ({e})",
            paths.ntp_drop_in.display()
        )),
    }
}

/// The state left beside the request for the gateway (optional reading for it): the zone
/// and servers in effect and this run's problems, one `PROBLEM=` line each.
fn applied_text(paths: &TimePaths, out: &TimeOutcome, when: &str) -> String {
    let servers = fs::read_to_string(&paths.ntp_drop_in)
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("NTP=").map(str::to_string))
        })
        .unwrap_or_default();
    let mut s = format!(
        "# Written by photo-pacs apply-time (root) after applying {}.\nAPPLIED_AT={when}\nTIME_ZONE={}\nNTP_SERVERS={servers}\n",
        REQUEST_NAME,
        current_zone(paths).unwrap_or_default(),
    );
    for p in &out.problems {
        // One line each, whatever a message holds (an OS error's text has no newline, but
        // this file is parsed by lines).
        s.push_str(&format!("PROBLEM={}\n", p.replace(['\n', '\r'], " ")));
    }
    s
}

/// The request file's name (the gateway's `clock::REQUEST_FILE`).
pub const REQUEST_NAME: &str = "time-request.env";

/// Applies the request at `paths.request`, if there is one, and leaves
/// [`APPLIED_FILE`] beside it. `now` is written there as the time of this run.
pub fn apply_time(
    paths: &TimePaths,
    host: &mut dyn Host,
    now: &str,
) -> Result<TimeOutcome, TimeError> {
    let mut out = TimeOutcome::default();
    let mut done: Option<String> = None;
    // A request written while this runs must not be lost: systemd does not start this
    // oneshot again for a change it sees while it is still running (a settings change then
    // a restore a moment later). So the file is read again after each round, until it
    // holds still.
    for _ in 0..5 {
        let Some(text) = read_request(&paths.request)? else {
            break;
        };
        if done.as_deref() == Some(text.as_str()) {
            break;
        }
        let (req, problems) = parse_request(&text, &paths.zoneinfo);
        out = TimeOutcome {
            applied: Vec::new(),
            problems,
        };
        if req.ntp_ok {
            apply_ntp(paths, &req.ntp_servers, host, &mut out);
        }
        if let Some(zone) = &req.time_zone {
            apply_zone(paths, zone, host, &mut out);
        }
        done = Some(text);
    }
    if done.is_none() {
        return Ok(out);
    }
    let applied = paths.request.with_file_name(APPLIED_FILE);
    if let Err(e) = write_file(&applied, applied_text(paths, &out, now).as_bytes(), 0o600) {
        out.problems.push(e.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what the helper asked of the box.
    #[derive(Default)]
    struct Fake {
        read_only: bool,
        calls: Vec<&'static str>,
        fail_remount: bool,
        /// A request the gateway writes while the helper restarts timesyncd.
        written_meanwhile: Option<(PathBuf, String)>,
    }

    impl Host for Fake {
        fn root_read_only(&self) -> bool {
            self.read_only
        }
        fn remount_root(&mut self, writable: bool) -> io::Result<()> {
            self.calls.push(if writable { "rw" } else { "ro" });
            if self.fail_remount {
                return Err(io::Error::other("busy"));
            }
            self.read_only = !writable;
            Ok(())
        }
        fn restart_timesyncd(&mut self) -> io::Result<()> {
            self.calls.push("restart");
            if let Some((path, text)) = self.written_meanwhile.take() {
                fs::write(path, text).unwrap();
            }
            Ok(())
        }
        fn restart_timedated(&mut self) -> io::Result<()> {
            self.calls.push("timedated");
            Ok(())
        }
    }

    struct Tree {
        _tmp: tempfile::TempDir,
        paths: TimePaths,
    }

    /// A zoneinfo with two zones, an alias, Debian's `localtime` link and a file that is
    /// not a zone; /etc with a localtime link and /etc/timezone.
    fn tree() -> Tree {
        let tmp = tempfile::tempdir().unwrap();
        let zi = tmp.path().join("usr/share/zoneinfo");
        let etc = tmp.path().join("etc");
        let data = tmp.path().join("data");
        for d in [zi.join("Asia"), zi.join("Etc"), etc.clone(), data.clone()] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(zi.join("Asia/Taipei"), b"TZif2\0\0\0taipei").unwrap();
        fs::write(zi.join("Etc/UTC"), b"TZif2\0\0\0utc").unwrap();
        std::os::unix::fs::symlink("Etc/UTC", zi.join("UTC")).unwrap();
        fs::write(zi.join("zone.tab"), b"# not a zone").unwrap();
        std::os::unix::fs::symlink(etc.join("localtime"), zi.join("localtime")).unwrap();
        std::os::unix::fs::symlink(zi.join("Etc/UTC"), etc.join("localtime")).unwrap();
        fs::write(etc.join("timezone"), "Etc/UTC\n").unwrap();
        fs::write(tmp.path().join("secret"), b"TZif but root's own").unwrap();
        let paths = TimePaths {
            request: data.join(REQUEST_NAME),
            zoneinfo: zi,
            localtime: etc.join("localtime"),
            timezone_name: etc.join("timezone"),
            ntp_drop_in: tmp.path().join("run/timesyncd.conf.d").join(DROP_IN_NAME),
        };
        Tree { _tmp: tmp, paths }
    }

    fn request(t: &Tree, text: &str) {
        fs::write(&t.paths.request, text).unwrap();
    }

    #[test]
    fn a_request_written_while_the_helper_runs_is_applied_too() {
        let t = tree();
        request(&t, "TIME_ZONE=Etc/UTC\nNTP_SERVERS=ntp1.example\n");
        let mut host = Fake {
            written_meanwhile: Some((
                t.paths.request.clone(),
                "TIME_ZONE=Asia/Taipei\nNTP_SERVERS=ntp1.example\n".into(),
            )),
            ..Fake::default()
        };
        let out = apply_time(&t.paths, &mut host, "now").unwrap();
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        assert_eq!(current_zone(&t.paths).as_deref(), Some("Asia/Taipei"));
    }

    #[test]
    fn zones_are_checked_against_the_zone_files() {
        let t = tree();
        let zi = &t.paths.zoneinfo;
        assert!(zone_is_installed(zi, "Asia/Taipei"));
        assert!(zone_is_installed(zi, "UTC"), "an alias inside zoneinfo");
        for bad in [
            "Asia/Taipe",
            "zone.tab",
            "Asia",
            "localtime",
            "../../../secret",
            "/etc/localtime",
            "",
            "Asia/./Taipei",
        ] {
            assert!(!zone_is_installed(zi, bad), "{bad}");
        }
        let outside = zi.join("Evil");
        std::os::unix::fs::symlink(zi.parent().unwrap().join("../../secret"), &outside).unwrap();
        assert!(!zone_is_installed(zi, "Evil"), "a link out of zoneinfo");
    }

    /// Debian's own tzdata, as on the image: aliases are symlinks (UTC -> Etc/UTC) and
    /// `localtime` links back to /etc/localtime.
    #[test]
    fn the_hosts_zone_files_are_read_as_on_the_image() {
        let zi = Path::new("/usr/share/zoneinfo");
        if !zi.join("Asia/Taipei").is_file() {
            eprintln!("SKIPPED: no tzdata in /usr/share/zoneinfo; this test did not run");
            return;
        }
        for good in ["Asia/Taipei", "Europe/Berlin", "UTC", "Etc/GMT+8"] {
            assert!(zone_is_installed(zi, good), "{good}");
        }
        for bad in [
            "localtime",
            "zone.tab",
            "Asia",
            "Asia/Atlantis",
            "right/../UTC",
        ] {
            assert!(!zone_is_installed(zi, bad), "{bad}");
        }
    }

    #[test]
    fn the_request_is_judged_line_by_line_without_quoting_values() {
        let t = tree();
        let zi = &t.paths.zoneinfo;
        let (r, p) = parse_request(
            "# comment\nTIME_ZONE=Asia/Taipei\nNTP_SERVERS=ntp1.example, 10.0.0.1\n",
            zi,
        );
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(r.time_zone.as_deref(), Some("Asia/Taipei"));
        assert_eq!(r.ntp_servers, ["ntp1.example", "10.0.0.1"]);
        assert!(r.ntp_ok);

        let (r, p) = parse_request("TIME_ZONE=\nNTP_SERVERS=\n", zi);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(
            r,
            Request {
                time_zone: None,
                ntp_servers: vec![],
                ntp_ok: true
            }
        );

        let (r, p) = parse_request(
            "TIME_ZONE=Canary/Nowhere\nNTP_SERVERS=canary;rm -rf /\nCANARY=1\nnot a line canary\nTIME_ZONE=../canary\n",
            zi,
        );
        assert_eq!(r.time_zone, None);
        assert!(!r.ntp_ok, "a refused NTP line leaves the servers alone");
        let all = p.join("\n");
        assert_eq!(p.len(), 5, "{all}");
        assert!(
            all.contains("line 1: TIME_ZONE names no time zone"),
            "{all}"
        );
        assert!(all.contains("line 2: NTP_SERVERS"), "{all}");
        assert!(
            all.contains("line 3: CANARY is not a time setting"),
            "{all}"
        );
        assert!(all.contains("line 4: is not NAME=value"), "{all}");
        assert!(
            all.contains("line 5: TIME_ZONE must be a time zone name"),
            "{all}"
        );
        assert!(
            !all.to_lowercase().contains("canary/") && !all.contains("rm -rf"),
            "{all}"
        );
        assert!(!all.contains("Nowhere"), "{all}");

        let too_many = (0..9)
            .map(|i| format!("ntp{i}.example"))
            .collect::<Vec<_>>()
            .join(" ");
        let (r, p) = parse_request(&format!("NTP_SERVERS={too_many}\n"), zi);
        assert!(!r.ntp_ok && p.len() == 1, "{p:?}");
    }

    #[test]
    fn a_new_zone_remounts_the_root_once_and_links_it_directly() {
        let t = tree();
        request(&t, "TIME_ZONE=Asia/Taipei\nNTP_SERVERS=\n");
        let mut host = Fake {
            read_only: true,
            ..Fake::default()
        };
        let out = apply_time(&t.paths, &mut host, "now").unwrap();
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        assert_eq!(
            host.calls,
            ["rw", "ro", "timedated"],
            "no drop-in to remove: no timesyncd restart; timedated reads the new zone"
        );
        assert!(host.read_only);
        let link = fs::read_link(&t.paths.localtime).unwrap();
        assert_eq!(link, t.paths.zoneinfo.join("Asia/Taipei"));
        assert_eq!(
            fs::read_to_string(&t.paths.timezone_name).unwrap(),
            "Asia/Taipei\n"
        );
        assert_eq!(current_zone(&t.paths).as_deref(), Some("Asia/Taipei"));

        // Again: nothing to do, the root is not touched.
        let mut host = Fake {
            read_only: true,
            ..Fake::default()
        };
        let out = apply_time(&t.paths, &mut host, "now").unwrap();
        assert!(host.calls.is_empty(), "{:?}", host.calls);
        assert!(
            out.applied.iter().any(|a| a.contains("already")),
            "{:?}",
            out.applied
        );
    }

    #[test]
    fn a_root_already_writable_is_left_so() {
        let t = tree();
        request(&t, "TIME_ZONE=Asia/Taipei\n");
        let mut host = Fake::default();
        let out = apply_time(&t.paths, &mut host, "now").unwrap();
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        assert_eq!(host.calls, ["timedated"], "no remount");
        assert_eq!(current_zone(&t.paths).as_deref(), Some("Asia/Taipei"));
    }

    #[test]
    fn a_failed_remount_is_reported_and_nothing_changes() {
        let t = tree();
        request(&t, "TIME_ZONE=Asia/Taipei\n");
        let mut host = Fake {
            read_only: true,
            fail_remount: true,
            ..Fake::default()
        };
        let out = apply_time(&t.paths, &mut host, "now").unwrap();
        assert_eq!(host.calls, ["rw"]);
        assert!(
            out.problems[0].contains("could not be made writable"),
            "{:?}",
            out.problems
        );
        assert_eq!(current_zone(&t.paths).as_deref(), Some("Etc/UTC"));
        let applied = fs::read_to_string(t.paths.request.with_file_name(APPLIED_FILE)).unwrap();
        assert!(applied.contains("\nTIME_ZONE=Etc/UTC\n"), "{applied}");
        assert!(applied.contains("\nPROBLEM=time zone not set"), "{applied}");
    }

    #[test]
    fn ntp_servers_become_a_drop_in_and_go_again_when_emptied() {
        let t = tree();
        request(&t, "TIME_ZONE=\nNTP_SERVERS=ntp1.example 10.0.0.1\n");
        let mut host = Fake {
            read_only: true,
            ..Fake::default()
        };
        let out = apply_time(&t.paths, &mut host, "now").unwrap();
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        assert_eq!(host.calls, ["restart"], "the root is not touched for NTP");
        let text = fs::read_to_string(&t.paths.ntp_drop_in).unwrap();
        assert!(
            text.contains("[Time]\nNTP=ntp1.example 10.0.0.1\n"),
            "{text}"
        );
        assert_eq!(
            current_zone(&t.paths).as_deref(),
            Some("Etc/UTC"),
            "zone left"
        );

        // The same again: no restart.
        let mut host = Fake::default();
        apply_time(&t.paths, &mut host, "now").unwrap();
        assert!(host.calls.is_empty(), "{:?}", host.calls);

        // A refused line leaves the drop-in.
        request(&t, "NTP_SERVERS=bad;host\n");
        let out = apply_time(&t.paths, &mut host, "now").unwrap();
        assert!(host.calls.is_empty() && out.problems.len() == 1);
        assert!(t.paths.ntp_drop_in.exists());

        request(&t, "TIME_ZONE=\nNTP_SERVERS=\n");
        let mut host = Fake::default();
        apply_time(&t.paths, &mut host, "now").unwrap();
        assert_eq!(host.calls, ["restart"]);
        assert!(!t.paths.ntp_drop_in.exists());
        let applied = fs::read_to_string(t.paths.request.with_file_name(APPLIED_FILE)).unwrap();
        assert!(
            applied.contains("\nNTP_SERVERS=\n") && !applied.contains("PROBLEM"),
            "{applied}"
        );
    }

    #[test]
    fn no_request_no_change() {
        let t = tree();
        let mut host = Fake::default();
        let out = apply_time(&t.paths, &mut host, "now").unwrap();
        assert!(out.applied.is_empty() && out.problems.is_empty());
        assert!(host.calls.is_empty());
        assert!(!t.paths.request.with_file_name(APPLIED_FILE).exists());
    }

    #[test]
    fn a_planted_request_is_refused_unread() {
        let t = tree();
        let secret = t.paths.zoneinfo.join("../../../secret");
        let mut host = Fake::default();

        std::os::unix::fs::symlink(&secret, &t.paths.request).unwrap();
        let e = apply_time(&t.paths, &mut host, "now").unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        fs::remove_file(&t.paths.request).unwrap();

        fs::hard_link(&secret, &t.paths.request).unwrap();
        let e = apply_time(&t.paths, &mut host, "now").unwrap_err();
        assert!(e.to_string().contains("more than one hard link"), "{e}");
        fs::remove_file(&t.paths.request).unwrap();

        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &t.paths.request,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        )
        .unwrap();
        let e = apply_time(&t.paths, &mut host, "now").unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        fs::remove_file(&t.paths.request).unwrap();

        // Sparse: costs no disk.
        fs::File::create(&t.paths.request)
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
        let e = apply_time(&t.paths, &mut host, "now").unwrap_err();
        assert!(matches!(e, TimeError::TooLarge { .. }), "{e}");
        fs::remove_file(&t.paths.request).unwrap();

        fs::write(&t.paths.request, b"TIME_ZONE=\xff\n").unwrap();
        let e = apply_time(&t.paths, &mut host, "now").unwrap_err();
        assert!(matches!(e, TimeError::NotText { .. }), "{e}");

        assert!(host.calls.is_empty());
        assert!(!e.to_string().contains("TZif"));
        assert_eq!(current_zone(&t.paths).as_deref(), Some("Etc/UTC"));
    }

    #[test]
    fn a_symlink_planted_at_the_applied_file_is_replaced_not_followed() {
        let t = tree();
        let victim = t.paths.zoneinfo.join("../../../secret");
        let planted = t.paths.request.with_file_name(APPLIED_FILE);
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        request(&t, "TIME_ZONE=\n");
        apply_time(&t.paths, &mut Fake::default(), "now").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"TZif but root's own");
        assert!(!fs::symlink_metadata(&planted).unwrap().is_symlink());
    }

    #[test]
    fn a_relative_link_into_zoneinfo_counts_as_that_zone() {
        let zi = Path::new("/usr/share/zoneinfo");
        assert_eq!(
            linked_zone(Path::new("../usr/share/zoneinfo/Asia/Taipei"), zi).as_deref(),
            Some("Asia/Taipei")
        );
        assert_eq!(
            linked_zone(Path::new("/usr/share/zoneinfo/UTC"), zi).as_deref(),
            Some("UTC")
        );
        assert_eq!(linked_zone(Path::new("/run/localtime"), zi), None);
    }
}
