//! Free disk space of the store's filesystem, and the reserve below which
//! the writer takes no new appends.
//!
//! sled grows its files as the log grows; a write that fails for lack of
//! space is a storage error, after which the writer is fail-stop (its
//! in-memory head may disagree with disk) and the service must restart.
//! The reserve keeps that from happening: while free space is under it,
//! the writer answers every append UNAVAILABLE at once, writes nothing, and
//! takes appends again as soon as space is freed. Health reports it.

use std::path::{Path, PathBuf};
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use tokio::sync::watch;

/// The space of the store's filesystem as last measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DiskState {
    /// Bytes available to the service (not to root only).
    pub free_bytes: u64,
    /// Size of the filesystem.
    pub total_bytes: u64,
    /// Free space is under the reserve: appends are refused.
    pub low: bool,
}

/// The available and total bytes of the filesystem holding `path`.
pub fn space(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` points to
    // writable memory of the right type; statvfs fills it on success.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so the struct is initialised.
    let stat = unsafe { stat.assume_init() };
    // The field types differ between platforms (u64 on Linux x86-64, u32 elsewhere).
    #[allow(clippy::unnecessary_cast)]
    let (unit, available, blocks) = (stat.f_frsize as u64, stat.f_bavail as u64, stat.f_blocks as u64);
    Ok((available * unit, blocks * unit))
}

/// Measures `dir`'s filesystem every `every` and publishes the state on
/// `state` (low when free space is under `reserve_bytes`) until `stop`
/// is dropped.
pub(crate) fn guard(
    dir: PathBuf,
    reserve_bytes: u64,
    every: Duration,
    state: watch::Sender<DiskState>,
    stop: std::sync::mpsc::Receiver<()>,
) {
    loop {
        match space(&dir) {
            Ok((free_bytes, total_bytes)) => {
                let low = free_bytes < reserve_bytes;
                let was_low = state.borrow().low;
                if low && !was_low {
                    tracing::error!(
                        free_mib = free_bytes >> 20,
                        reserve_mib = reserve_bytes >> 20,
                        "free disk space is under the reserve: appends are refused until space is freed"
                    );
                } else if !low && was_low {
                    tracing::info!(
                        free_mib = free_bytes >> 20,
                        "free disk space is above the reserve again: appends resume"
                    );
                }
                state.send_replace(DiskState {
                    free_bytes,
                    total_bytes,
                    low,
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot measure free disk space"),
        }
        match stop.recv_timeout(every) {
            Err(RecvTimeoutError::Timeout) => continue,
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_space_of_a_real_directory_is_measured() {
        let dir = tempfile::tempdir().unwrap();
        let (free, total) = space(dir.path()).unwrap();
        assert!(total > 0 && free <= total, "free {free} of {total}");
        assert!(space(&dir.path().join("missing")).is_err());
    }
}
