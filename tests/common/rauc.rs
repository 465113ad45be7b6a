//! A box-to-be for the update tests: a throwaway CA (openssl), RAUC bundles made with
//! `rauc bundle` from a tiny ext4 image, RAUC's configuration with two file-backed root
//! slots and a custom bootloader backend, and RAUC's service on a private D-Bus.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const COMPATIBLE: &str = "photo-pacs-rpi-arm64";
pub const RUNNING: &str = "0.2.0+20261130220501";

pub fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a signing certificate under it, made with openssl for this test only.
pub struct Signer {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn make_signer(dir: &Path, name: &str) -> Signer {
    let ext = dir.join("ext.cnf");
    std::fs::write(
        &ext,
        "[req]\ndistinguished_name=dn\n[dn]\n[ca]\nbasicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n[leaf]\nbasicConstraints=critical,CA:false\nkeyUsage=critical,digitalSignature\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    )
    .unwrap();
    let p = |s: &str| dir.join(format!("{name}-{s}"));
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    sh(Command::new("openssl")
        .args(["req", "-x509"])
        .args(ec)
        .arg("-keyout")
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("ca.pem"))
        .args(["-days", "30", "-subj"])
        .arg(format!("/O={name} CA/CN={name} Root"))
        .arg("-config")
        .arg(&ext)
        .args(["-extensions", "ca"]));
    sh(Command::new("openssl")
        .arg("req")
        .args(ec)
        .arg("-keyout")
        .arg(p("sign.key"))
        .arg("-out")
        .arg(p("sign.csr"))
        .arg("-subj")
        .arg(format!("/O={name}/CN={name} Release Signing"))
        .arg("-config")
        .arg(&ext));
    sh(Command::new("openssl")
        .args(["x509", "-req", "-in"])
        .arg(p("sign.csr"))
        .arg("-CA")
        .arg(p("ca.pem"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .args(["-CAcreateserial", "-days", "30", "-out"])
        .arg(p("sign.pem"))
        .arg("-extfile")
        .arg(&ext)
        .args(["-extensions", "leaf"]));
    Signer {
        ca: p("ca.pem"),
        cert: p("sign.pem"),
        key: p("sign.key"),
    }
}

/// A box-to-be: RAUC's configuration with two file-backed root slots, the release file,
/// the signers, and the bundles made from a tiny ext4 image.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub trusted: Signer,
    pub stranger: Signer,
    pub rootfs: PathBuf,
}

impl Lab {
    pub fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let trusted = make_signer(d, "Photo PACS Test");
        let stranger = make_signer(d, "Someone Else");
        // Random bytes, so the squashfs is more than the one block `rauc bundle` refuses.
        let tree = d.join("tree/etc");
        std::fs::create_dir_all(&tree).unwrap();
        let noise: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(tree.join("noise"), noise).unwrap();
        std::fs::write(tree.join("photo-pacs-release"), "VERSION=next\n").unwrap();
        let rootfs = d.join("rootfs.ext4");
        sh(Command::new("mke2fs")
            .args(["-q", "-t", "ext4", "-d"])
            .arg(d.join("tree"))
            .arg(&rootfs)
            .arg("4M"));
        for slot in ["slotA.img", "slotB.img"] {
            std::fs::write(d.join(slot), vec![0u8; 4 * 1024 * 1024]).unwrap();
        }
        std::fs::create_dir_all(d.join("rauc-data")).unwrap();
        // RAUC's "custom" bootloader backend: the boot state in files, so a test can say
        // which slot the bootloader calls good or bad (noop cannot tell either).
        let boot = d.join("boot");
        std::fs::create_dir_all(&boot).unwrap();
        std::fs::write(
            boot.join("backend.sh"),
            "#!/bin/sh\nd=$(dirname \"$0\")\ncase \"$1\" in\n  get-primary) cat \"$d/primary\" 2>/dev/null || echo A ;;\n  set-primary) echo \"$2\" > \"$d/primary\" ;;\n  get-state) cat \"$d/state-$2\" 2>/dev/null || echo good ;;\n  set-state) echo \"$3\" > \"$d/state-$2\" ;;\n  *) exit 1 ;;\nesac\n",
        )
        .unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                boot.join("backend.sh"),
                std::fs::Permissions::from_mode(0o755),
            )
            .unwrap();
        }
        std::fs::create_dir_all(d.join("mnt")).unwrap();
        std::fs::write(
            d.join("system.conf"),
            format!(
                "[system]\ncompatible={COMPATIBLE}\nbootloader=custom\ndata-directory={data}\n\n[handlers]\nbootloader-custom-backend={backend}\n\n[keyring]\npath={ca}\n\n[slot.rootfs.0]\ndevice={a}\ntype=raw\nbootname=A\n\n[slot.rootfs.1]\ndevice={b}\ntype=raw\nbootname=B\n",
                data = d.join("rauc-data").display(),
                backend = boot.join("backend.sh").display(),
                ca = trusted.ca.display(),
                a = d.join("slotA.img").display(),
                b = d.join("slotB.img").display(),
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("photo-pacs-release"),
            format!("VERSION={RUNNING}\nCOMPATIBLE={COMPATIBLE}\n"),
        )
        .unwrap();
        Lab {
            dir,
            trusted,
            stranger,
            rootfs,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A bundle made by `rauc bundle`.
    pub fn bundle(
        &self,
        name: &str,
        version: &str,
        compatible: &str,
        format: &str,
        by: &Signer,
    ) -> PathBuf {
        let content = self.path(&format!("content-{name}"));
        std::fs::create_dir_all(&content).unwrap();
        std::fs::copy(&self.rootfs, content.join("rootfs.ext4")).unwrap();
        std::fs::write(
            content.join("manifest.raucm"),
            format!(
                "[update]\ncompatible={compatible}\nversion={version}\n\n[bundle]\nformat={format}\n\n[image.rootfs]\nfilename=rootfs.ext4\n"
            ),
        )
        .unwrap();
        let out = self.path(&format!("{name}.raucb"));
        sh(Command::new("rauc")
            .arg("bundle")
            .arg(format!("--cert={}", by.cert.display()))
            .arg(format!("--key={}", by.key.display()))
            .arg(&content)
            .arg(&out));
        out
    }

    /// The gateway's environment for this box, with `admin` as its admin password.
    pub fn env_with(&self, admin: &str) -> Vec<(&'static str, String)> {
        vec![
            ("PHOTO_PACS_ADMIN_PASSWORD", admin.to_string()),
            (
                "PHOTO_PACS_RAUC_CONF",
                self.path("system.conf").display().to_string(),
            ),
            (
                "PHOTO_PACS_RELEASE_FILE",
                self.path("photo-pacs-release").display().to_string(),
            ),
            ("PHOTO_PACS_MIN_FREE_MB", "0".to_string()),
        ]
    }
}

/// A private D-Bus (dbus-daemon) and RAUC's service on it, as the box runs them on the
/// system bus. Both are stopped by PID when this goes away.
pub struct RaucService {
    pub address: String,
    dbus: Child,
    rauc: Child,
    log: PathBuf,
}

impl RaucService {
    pub fn start(lab: &Lab) -> RaucService {
        Self::start_booted(lab, "A")
    }

    /// RAUC's service as if the box had booted slot `booted`.
    pub fn start_booted(lab: &Lab, booted: &str) -> RaucService {
        let mut dbus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-daemon");
        let mut line = String::new();
        {
            use std::io::BufRead;
            let out = dbus.stdout.take().unwrap();
            std::io::BufReader::new(out).read_line(&mut line).unwrap();
        }
        let address = line.trim().to_string();
        assert!(address.starts_with("unix:"), "dbus-daemon said {line:?}");
        let log = lab.path("rauc-service.log");
        // GLib's "starter" bus is the session bus when DBUS_STARTER_BUS_TYPE says so: RAUC
        // then owns its name on this private bus instead of the system's.
        let rauc = Command::new("rauc")
            .arg("service")
            .arg(format!("--conf={}", lab.path("system.conf").display()))
            .arg(format!("--mount={}", lab.path("mnt").display()))
            .arg(format!("--override-boot-slot={booted}"))
            .env("DBUS_STARTER_BUS_TYPE", "session")
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start rauc service");
        let svc = RaucService {
            address,
            dbus,
            rauc,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = Command::new("busctl")
                .arg(format!("--address={}", svc.address))
                .args([
                    "get-property",
                    "de.pengutronix.rauc",
                    "/",
                    "de.pengutronix.rauc.Installer",
                    "Operation",
                ])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return svc;
            }
            assert!(
                Instant::now() < deadline,
                "rauc service did not appear:\n{}",
                svc.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn busctl(&self, args: &[&str]) -> String {
        let out = Command::new("busctl")
            .arg(format!("--address={}", self.address))
            .arg("--json=short")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "busctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RaucService {
    fn drop(&mut self) {
        for child in [&mut self.rauc, &mut self.dbus] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether this kernel can give RAUC a verity bundle (dm-verity through /dev/mapper).
pub fn has_device_mapper() -> bool {
    Path::new("/dev/mapper/control").exists()
}
