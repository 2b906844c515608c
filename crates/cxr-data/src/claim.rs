//! Claiming an output path for one process, so that two commands started at
//! once into the same `--out` cannot both write it.
//!
//! The claim is an exclusive advisory lock (`flock`) on a hidden sibling
//! file, `.NAME.lock` beside `NAME`: a sibling rather than a file inside,
//! because stores are built in a temporary directory and renamed onto
//! `NAME`, and because the check "is the directory empty" must not see the
//! lock itself. The kernel releases the lock when the process ends, however
//! it ends, so a killed run never leaves its output claimed. The lock file
//! is removed when the claim is dropped; a process that locked the file
//! just as it was removed notices that the path no longer names the file it
//! holds and tries again, so removing it cannot let two processes in.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Why an output path could not be claimed.
#[derive(Debug, Error)]
pub enum ClaimError {
    /// Another process holds the claim.
    #[error(
        "{path} is being written by another cxrlearn process{}; wait for it to finish or choose another --out",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    InUse {
        /// The claimed output.
        path: PathBuf,
        /// The holder's process id, as it wrote it in the lock file.
        pid: Option<u32>,
    },
    /// The lock file could not be created or locked.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Whether to wait for another holder to finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Fail at once with [`ClaimError::InUse`]: an output that another run
    /// is writing would be mixed or replaced.
    No,
    /// Block until the holder is done (a cache that the next holder may
    /// find complete).
    Yes,
}

/// An output path claimed by this process until dropped.
#[derive(Debug)]
pub struct Claim {
    lock: PathBuf,
    file: File,
}

impl Claim {
    /// Claims `out` (a directory or file that may not exist yet; its parent
    /// is created). With [`Wait::Yes`], `on_wait` is called once before
    /// blocking, with the holder's pid when known.
    pub fn acquire(
        out: &Path,
        wait: Wait,
        on_wait: impl FnOnce(Option<u32>),
    ) -> Result<Self, ClaimError> {
        let lock = lock_path(out);
        let io = |source| ClaimError::Io {
            path: lock.clone(),
            source,
        };
        if let Some(parent) = lock.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut on_wait = Some(on_wait);
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&lock)
                .map_err(io)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let pid = holder(&mut file);
                    if wait == Wait::No {
                        return Err(ClaimError::InUse {
                            path: out.to_owned(),
                            pid,
                        });
                    }
                    if let Some(f) = on_wait.take() {
                        f(pid);
                    }
                    file.lock().map_err(io)?;
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
            // The holder before us may have removed the file between our
            // open and our lock: then we hold a file nobody else can see,
            // and must lock the one the path names now.
            let same = match std::fs::metadata(&lock) {
                Ok(m) => {
                    let held = file.metadata().map_err(io)?;
                    m.dev() == held.dev() && m.ino() == held.ino()
                }
                Err(_) => false,
            };
            if same {
                file.set_len(0).map_err(io)?;
                file.rewind().map_err(io)?;
                write!(file, "{}", std::process::id()).map_err(io)?;
                return Ok(Self { lock, file });
            }
        }
    }

    /// The lock file.
    pub fn lock_file(&self) -> &Path {
        &self.lock
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // Removed while still locked; the lock goes with the file handle.
        let _ = std::fs::remove_file(&self.lock);
        let _ = self.file.unlock();
    }
}

/// The pid a holder wrote into its lock file, if readable.
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// `.NAME.lock` beside `out` (`out` with `.` for an empty parent).
pub fn lock_path(out: &Path) -> PathBuf {
    // Absolute first, so `--out .` or `--out runs/a/` name their directory.
    let abs = std::path::absolute(out).unwrap_or_else(|_| out.to_owned());
    let out = abs.as_path();
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    parent.join(format!(".{name}.lock"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_second_claim_fails_at_once_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        let first = Claim::acquire(&out, Wait::No, |_| {}).unwrap();
        let e = Claim::acquire(&out, Wait::No, |_| {}).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("being written by another cxrlearn process"),
            "{text}"
        );
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(first);
        // Released and removed: nothing is left beside the output.
        assert!(!lock_path(&out).exists());
        let _again = Claim::acquire(&out, Wait::No, |_| {}).unwrap();
    }

    #[test]
    fn waiting_claims_take_turns_even_as_lock_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("a").join("cache");
        let inside = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..20 {
                        let _c = Claim::acquire(&out, Wait::Yes, |_| {}).unwrap();
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(most.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_lock_is_a_hidden_sibling() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(lock_path(Path::new("runs/a")), cwd.join("runs/.a.lock"));
        assert_eq!(lock_path(Path::new("runs/a/")), cwd.join("runs/.a.lock"));
        assert_eq!(lock_path(Path::new("/x/a")), Path::new("/x/.a.lock"));
    }
}
