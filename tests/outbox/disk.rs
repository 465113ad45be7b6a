//! A data partition that fills up: a small tmpfs as the gateway's data directory.

use std::process::Command;
use std::time::Duration;

use super::*;
use crate::common::storescp::{dcmtk_tool, free_port, under_ci};

/// A tmpfs of `mib` MiB mounted on a fresh folder (needs root); unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u32) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(!under_ci(), "cannot mount a tmpfs (needs root) under CI");
            eprintln!("SKIPPED: cannot mount a tmpfs (needs root)");
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn send_large(gw: &Gateway, n: usize, photo: &[u8]) -> reqwest::blocking::Response {
    let images = vec![("a.jpg", photo.to_vec()), ("b.jpg", photo.to_vec())];
    client()
        .post(gw.url("/api/studies"))
        .multipart(form(&[("patientId", &patient(n))], &images))
        .send()
        .unwrap()
}

#[test]
#[cfg_attr(
    any(missing_peer = "namespaces", missing_peer = "dcmtk"),
    ignore = "needs root (to mount a tmpfs) and dcmtk (apt-get install dcmtk)"
)]
fn a_full_data_partition_refuses_new_photos_and_keeps_the_queued_ones() {
    let (Some(storescp), Some(dcmdump)) = (dcmtk_tool("storescp"), dcmtk_tool("dcmdump")) else {
        return;
    };
    let Some(fs) = Tmpfs::mount(64) else {
        return;
    };
    let port = free_port();
    let env = cstore_env(
        port,
        &[
            ("PHOTO_PACS_MIN_FREE_MB", "24"),
            ("PHOTO_PACS_RETRY_MAX_S", "2"),
            ("PHOTO_PACS_DELIVERY_WAIT_S", "1"),
            ("PHOTO_PACS_LOCAL_RESIZE_MAX", "0"),
            ("PHOTO_PACS_LOCAL_TRANSFER_SYNTAX", "1.2.840.10008.1.2.1"),
        ],
    );
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let gw = Gateway::start_in(fs.path(), &pairs);
    // Something else on the card leaves about 32 MiB free.
    let filler = fs.path().join("filler");
    std::fs::write(&filler, vec![7u8; 32 * 1024 * 1024]).unwrap();
    // Each object of it, uncompressed, takes 5.5 MiB of the partition.
    let photo = patterned_jpeg(1600, 1200);

    // The PACS is down: the first study is saved (11 MiB), after which less than 24 MiB
    // is left and the next is refused with 507.
    let first = send_large(&gw, 1, &photo);
    assert_eq!(first.status(), 202);
    let first: serde_json::Value = first.json().unwrap();
    let refused = send_large(&gw, 2, &photo);
    let doc = expect_error(refused, 507, "INSUFFICIENT_STORAGE", "almost full");
    println!("refused: {doc}");
    assert!(
        orphan_folders(fs.path()).is_empty(),
        "the refused upload left files"
    );

    // What was queued is intact: both objects whole, the study still queued.
    let objects = outbox_objects(fs.path());
    assert_eq!(objects.len(), 2, "{objects:?}");
    for o in &objects {
        let (patient_id, ..) = dump_ids(&dcmdump, o);
        assert_eq!(patient_id, patient(1));
    }
    let id = first["id"].as_str().unwrap();
    assert_eq!(study_state(&gw, id), "queued");

    // Space is freed: uploads are taken again, and the PACS, back, gets them all.
    std::fs::remove_file(&filler).unwrap();
    let again = send_large(&gw, 3, &photo);
    assert_eq!(again.status(), 202);
    let again: serde_json::Value = again.json().unwrap();
    let received = tempfile::tempdir().unwrap();
    let scp = storescp_at(&storescp, port, received.path());
    let files = scp.wait_for_files(4, Duration::from_secs(30));
    assert_eq!(files.len(), 4);
    for doc in [&first, &again] {
        let id = doc["id"].as_str().unwrap();
        wait_stored(&gw, id, Duration::from_secs(10));
    }
    drop(gw);
}
