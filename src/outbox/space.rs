//! Room on the data partition: uploads stop before the card fills, so photos already queued
//! can always be kept and their state written.

use std::path::Path;

/// Free space on the file system holding `path`.
#[derive(Clone, Copy, Debug)]
pub struct Space {
    /// Bytes an unprivileged process may still write.
    pub available: u64,
    pub total: u64,
}

pub fn of(path: &Path) -> std::io::Result<Space> {
    let s = rustix::fs::statvfs(path).map_err(std::io::Error::from)?;
    let unit = s.f_frsize.max(1);
    Ok(Space {
        available: s.f_bavail.saturating_mul(unit),
        total: s.f_blocks.saturating_mul(unit),
    })
}

/// The partition is too full for new photos: less than `min_free` bytes, or less than a
/// tenth of it, is left.
#[derive(Debug, thiserror::Error)]
#[error(
    "the box's storage is almost full ({} MB free): photos already saved are kept and will be sent, but no new ones can be accepted until space is freed; tell the administrator",
    available / (1024 * 1024)
)]
pub struct Full {
    pub available: u64,
}

/// Checks every path's file system.
pub fn check(paths: &[&Path], min_free: u64) -> Result<(), Full> {
    for p in paths {
        // A path we cannot measure is not a reason to refuse: the write will tell.
        let Ok(space) = of(p) else { continue };
        if space.available < min_free || space.available < space.total / 10 {
            return Err(Full {
                available: space.available,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_and_refuses_past_the_threshold() {
        let tmp = tempfile::tempdir().unwrap();
        let s = of(tmp.path()).unwrap();
        assert!(s.total > 0 && s.available <= s.total);
        assert!(check(&[tmp.path()], 0).is_ok() || s.available < s.total / 10);
        let e = check(&[tmp.path()], u64::MAX).unwrap_err();
        assert!(e.to_string().contains("almost full"), "{e}");
    }
}
