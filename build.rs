//! Finds which test peers this machine lacks, so that `cargo test` reports their tests as
//! ignored, with the reason, instead of as passed. Under CI (`CI=true` or `1`) nothing is
//! ignored: there a missing peer fails its test.
//!
//! Each missing peer becomes `--cfg missing_peer="<name>"`; a test that needs it carries
//! `#[cfg_attr(missing_peer = "<name>", ignore = "<why and how to install>")]`. The gateway
//! itself never reads these cfgs.
//!
//! It also gzips the PWA's text and WebAssembly files once, here, so that the box serves a
//! phone on a slow link a third of the bytes without compressing anything at run time
//! (see src/http/assets.rs).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Every peer name a test may gate on.
const PEERS: &[&str] = &[
    "dcmtk",
    "dicom3tools",
    "orthanc",
    "python",
    "openssl",
    "browser",
    "systemd",
    "schemathesis",
    "namespaces",
    "prometheus",
    "faketime",
    "uboot",
    "rauc",
    "dbus",
    "squashfs",
    "wallpapers",
];

fn main() {
    compress_assets();
    build_info();
    let names: Vec<String> = PEERS.iter().map(|p| format!("\"{p}\"")).collect();
    println!(
        "cargo::rustc-check-cfg=cfg(missing_peer, values({}))",
        names.join(", ")
    );
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rerun-if-env-changed=PATH");
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    if ci {
        return;
    }
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let missing = |peer: &str, present: bool| {
        if !present {
            println!("cargo::rustc-cfg=missing_peer=\"{peer}\"");
        }
    };
    missing(
        "dcmtk",
        [
            "storescp", "storescu", "echoscu", "dcmdump", "dcmj2pnm", "img2dcm", "wlmscpfs",
            "dump2dcm",
        ]
        .iter()
        .all(|p| program(p).is_some()),
    );
    missing("dicom3tools", program("dciodvfy").is_some());
    missing(
        "orthanc",
        (program("Orthanc").is_some() || watch(Path::new("/usr/sbin/Orthanc")))
            && watch(Path::new(
                "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
            ))
            && watch(Path::new(
                "/usr/share/orthanc/plugins/libModalityWorklists.so",
            )),
    );
    missing("python", python_peers());
    missing("openssl", program("openssl").is_some());
    missing(
        "browser",
        program("node").is_some()
            && watch(Path::new("/usr/bin/chromium"))
            && watch(&manifest.join("tests/browser/node_modules/playwright-core/package.json")),
    );
    missing("systemd", program("systemd-analyze").is_some());
    missing("schemathesis", program("schemathesis").is_some());
    missing("namespaces", can_unshare());
    missing("prometheus", program("prometheus").is_some());
    missing("faketime", program("faketime").is_some());
    missing(
        "uboot",
        [
            "qemu-system-aarch64",
            "mkimage",
            "mkenvimage",
            "fw_printenv",
            "mkfs.vfat",
            "mcopy",
            "sfdisk",
            "mke2fs",
        ]
        .iter()
        .all(|p| program(p).is_some())
            && watch(Path::new("/usr/lib/u-boot/qemu_arm64/u-boot.bin")),
    );
    missing("rauc", program("rauc").is_some());
    missing(
        "dbus",
        program("dbus-daemon").is_some() && program("busctl").is_some(),
    );
    missing(
        "squashfs",
        program("mksquashfs").is_some() && program("mke2fs").is_some(),
    );
    // Real photographs to make phone-sized test photos from (mate-backgrounds).
    missing(
        "wallpapers",
        watch(Path::new("/usr/share/backgrounds/mate/nature/Wood.jpg")),
    );
}

/// Whether `path` exists; asks cargo to run this script again when it (or, while it is
/// missing, the nearest folder above it that exists) changes, so installing a peer later
/// takes effect. A missing path itself is never named: cargo would then rerun this script,
/// and rebuild the crate, on every build.
fn watch(path: &Path) -> bool {
    let exists = path.exists();
    let watched = path.ancestors().find(|p| p.exists());
    if let Some(w) = watched.filter(|w| !w.as_os_str().is_empty() && *w != Path::new("/")) {
        println!("cargo::rerun-if-changed={}", w.display());
    }
    exists
}

/// `name` in PATH, watched as above.
fn program(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    let dirs: Vec<PathBuf> = std::env::split_paths(&paths).collect();
    match dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
        Some(found) => {
            watch(&found);
            Some(found)
        }
        None => {
            for d in dirs.iter().filter(|d| d.is_dir()) {
                watch(d);
            }
            None
        }
    }
}

/// pydicom, numpy, Pillow and pynetdicom importable by `python3`.
fn python_peers() -> bool {
    if program("python3").is_none() {
        return false;
    }
    let probe = Command::new("python3")
        .args([
            "-c",
            "import sys, site\n\
             try:\n    import pydicom, numpy, PIL, pynetdicom\nexcept ImportError:\n    print(site.getsitepackages()[0]); sys.exit(1)\n\
             print(pydicom.__file__)",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let Ok(out) = probe else {
        return false;
    };
    let shown = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !shown.is_empty() {
        watch(Path::new(&shown));
    }
    out.status.success()
}

/// A mount namespace can be made (root and util-linux `unshare`): the journal tests need one.
fn can_unshare() -> bool {
    program("unshare").is_some()
        && Command::new("unshare")
            .args(["-m", "true"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// File types worth compressing; images and icons are compressed already.
const COMPRESSIBLE: &[&str] = &[
    "html",
    "js",
    "mjs",
    "css",
    "wasm",
    "json",
    "webmanifest",
    "svg",
];

/// Writes `$OUT_DIR/assets-gz/<path>.gz` for each compressible asset that gzip makes at
/// least a tenth smaller, and `$OUT_DIR/assets_gz.rs` listing them with the SHA-256 of the
/// file they were made from: the server serves one only while the file is still that one.
fn compress_assets() {
    use sha2::Digest as _;
    use std::io::Write as _;
    println!("cargo::rerun-if-changed=assets");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let root = manifest.join("assets");
    let gz_dir = out.join("assets-gz");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    let mut table = String::from(
        "/// (asset path, SHA-256 of the file, gzip of it), made by build.rs.\n\
         pub static GZIPPED: &[(&str, [u8; 32], &[u8])] = &[\n",
    );
    for path in files {
        let Ok(rel) = path.strip_prefix(&root) else {
            continue;
        };
        let rel = rel.to_string_lossy().replace('\\', "/");
        let ext = rel.rsplit_once('.').map_or("", |(_, e)| e);
        if !COMPRESSIBLE.contains(&ext) {
            continue;
        }
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("read {rel}: {e}"));
        // mtime 0 and no file name: the same file always compresses to the same bytes.
        let mut enc = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::best());
        enc.write_all(&data)
            .unwrap_or_else(|e| panic!("gzip {rel}: {e}"));
        let gz = enc.finish().unwrap_or_else(|e| panic!("gzip {rel}: {e}"));
        if gz.len() * 10 > data.len() * 9 {
            continue;
        }
        let dst = gz_dir.join(format!("{rel}.gz"));
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{}: {e}", parent.display()));
        }
        std::fs::write(&dst, &gz).unwrap_or_else(|e| panic!("{}: {e}", dst.display()));
        let hash: Vec<String> = sha2::Sha256::digest(&data)
            .iter()
            .map(|b| b.to_string())
            .collect();
        table.push_str(&format!(
            "    ({rel:?}, [{}], include_bytes!({:?})),\n",
            hash.join(", "),
            dst.display().to_string()
        ));
    }
    table.push_str("];\n");
    std::fs::write(out.join("assets_gz.rs"), table).unwrap_or_else(|e| panic!("assets_gz.rs: {e}"));
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}

/// The commit the gateway was built from, for the status page and diagnostics: from
/// PHOTO_PACS_BUILD_COMMIT when a packager sets it, else from git, else none.
fn build_info() {
    println!("cargo::rerun-if-env-changed=PHOTO_PACS_BUILD_COMMIT");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let commit = std::env::var("PHOTO_PACS_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=10", "HEAD"]));
    for path in ["HEAD", "refs/heads", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo::rerun-if-changed={p}");
        }
    }
    if let Some(c) = commit.filter(|c| c.bytes().all(|b| b.is_ascii_alphanumeric())) {
        println!("cargo::rustc-env=PHOTO_PACS_COMMIT={c}");
    }
    let target = std::env::var("TARGET").unwrap_or_default();
    let profile = std::env::var("PROFILE").unwrap_or_default();
    println!("cargo::rustc-env=PHOTO_PACS_TARGET={target}");
    println!("cargo::rustc-env=PHOTO_PACS_PROFILE={profile}");
}
