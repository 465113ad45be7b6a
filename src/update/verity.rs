//! The dm-verity hash tree of a verity bundle, checked before RAUC sees the file:
//! `rauc info` (1.8) checks only the signed manifest, so a payload changed after signing
//! would pass it and fail only halfway through an install.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use sha2::{Digest, Sha256};

/// dm-verity's data and hash block size as `rauc bundle` writes them.
const BLOCK: usize = 4096;
const HASH: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum VerityError {
    #[error("cannot read the bundle: {0}")]
    Io(#[from] std::io::Error),
    #[error("the bundle's layout does not match its signed manifest")]
    Layout,
    #[error("the bundle's content does not match its signed hash")]
    Mismatch,
}

/// What the signed manifest says about the payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub salt: Vec<u8>,
    pub root_hash: Vec<u8>,
    /// Bytes of the hash tree stored after the payload.
    pub tree_size: u64,
}

/// Recomputes the tree over the payload and compares it, and its root, with what the
/// bundle stores and the manifest signs. Reads the whole file once (seconds for a root
/// file system on a Pi): run it off the async threads.
pub fn check(path: &Path, manifest: &Manifest) -> Result<(), VerityError> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len < 8 {
        return Err(VerityError::Layout);
    }
    file.seek(SeekFrom::Start(len - 8))?;
    let mut size = [0u8; 8];
    file.read_exact(&mut size)?;
    let signature = u64::from_be_bytes(size);
    let data_len = len
        .checked_sub(8)
        .and_then(|n| n.checked_sub(signature))
        .and_then(|n| n.checked_sub(manifest.tree_size))
        .ok_or(VerityError::Layout)?;
    if data_len == 0
        || !data_len.is_multiple_of(BLOCK as u64)
        || !manifest.tree_size.is_multiple_of(BLOCK as u64)
    {
        return Err(VerityError::Layout);
    }
    file.seek(SeekFrom::Start(0))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file.take(data_len));
    let mut level = Vec::with_capacity((data_len as usize / BLOCK) * HASH);
    let mut block = vec![0u8; BLOCK];
    for _ in 0..data_len / BLOCK as u64 {
        reader.read_exact(&mut block)?;
        level.extend_from_slice(&salted(&manifest.salt, &block));
    }
    let mut file = reader.into_inner().into_inner();
    // Levels bottom up, each padded to whole blocks; the device stores them top first.
    let mut levels = Vec::new();
    loop {
        pad(&mut level);
        let next: Vec<u8> = level
            .chunks(BLOCK)
            .flat_map(|b| salted(&manifest.salt, b))
            .collect();
        let top = level.len() == BLOCK;
        levels.push(level);
        if top {
            if next != manifest.root_hash {
                return Err(VerityError::Mismatch);
            }
            break;
        }
        level = next;
    }
    let expected: Vec<u8> = levels.into_iter().rev().flatten().collect();
    if expected.len() as u64 != manifest.tree_size {
        return Err(VerityError::Layout);
    }
    file.seek(SeekFrom::Start(data_len))?;
    let mut stored = vec![0u8; expected.len()];
    file.read_exact(&mut stored)?;
    if stored != expected {
        return Err(VerityError::Mismatch);
    }
    Ok(())
}

fn salted(salt: &[u8], data: &[u8]) -> [u8; HASH] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(data);
    h.finalize().into()
}

fn pad(level: &mut Vec<u8>) {
    let rem = level.len() % BLOCK;
    if rem != 0 || level.is_empty() {
        level.resize(level.len() + (BLOCK - rem), 0);
    }
}

/// Lowercase hexadecimal to bytes; `None` for anything else.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a bundle-shaped file: payload, its tree, a fake signature and its size.
    fn bundle(payload: &[u8], salt: &[u8]) -> (Vec<u8>, Manifest) {
        let mut level: Vec<u8> = payload
            .chunks(BLOCK)
            .flat_map(|b| salted(salt, b))
            .collect();
        let mut levels = Vec::new();
        let root = loop {
            pad(&mut level);
            let next: Vec<u8> = level.chunks(BLOCK).flat_map(|b| salted(salt, b)).collect();
            let top = level.len() == BLOCK;
            levels.push(level);
            if top {
                break next;
            }
            level = next;
        };
        let tree: Vec<u8> = levels.into_iter().rev().flatten().collect();
        let mut file = payload.to_vec();
        file.extend_from_slice(&tree);
        file.extend_from_slice(b"signature");
        file.extend_from_slice(&9u64.to_be_bytes());
        let manifest = Manifest {
            salt: salt.to_vec(),
            root_hash: root,
            tree_size: tree.len() as u64,
        };
        (file, manifest)
    }

    #[test]
    fn a_flipped_byte_anywhere_in_payload_or_tree_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.raucb");
        // 200 blocks: two levels (the first spans two hash blocks).
        let payload: Vec<u8> = (0..200 * BLOCK).map(|i| (i * 7 % 251) as u8).collect();
        let (good, manifest) = bundle(&payload, b"salt");
        std::fs::write(&path, &good).unwrap();
        check(&path, &manifest).unwrap();
        for at in [0, 5000, payload.len() - 1, payload.len() + 10] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            std::fs::write(&path, &bad).unwrap();
            assert!(
                matches!(check(&path, &manifest), Err(VerityError::Mismatch)),
                "byte {at}"
            );
        }
        let mut short = good.clone();
        short.drain(..BLOCK);
        std::fs::write(&path, &short).unwrap();
        assert!(check(&path, &manifest).is_err());
    }

    #[test]
    fn hex_reads_only_hex() {
        assert_eq!(from_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(from_hex("0"), None);
        assert_eq!(from_hex("zz"), None);
    }
}
