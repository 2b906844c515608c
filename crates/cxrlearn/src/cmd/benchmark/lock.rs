//! Exclusive lock files shared by the benchmark's threads and by concurrent
//! processes (Slurm array tasks): `flock(2)` on a file beside the guarded
//! directory. The kernel drops the lock when its holder exits, so a task
//! killed at its time limit never leaves a stale lock behind. The lock files
//! themselves stay (empty), which is harmless.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rustix::fs::{FlockOperation, flock};

/// A held lock; released on drop.
pub(crate) struct Lock {
    _file: File,
}

impl Lock {
    /// Blocks until `path` is locked by this caller (created with its parents
    /// if missing). Says once on stderr when it has to wait, unless `quiet`.
    pub(crate) fn acquire(path: &Path, quiet: bool) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        // Try first, so a wait can be reported; then block.
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            if !quiet {
                eprintln!("waiting for {} (held by another run)", path.display());
            }
            let started = Instant::now();
            flock(&file, FlockOperation::LockExclusive)
                .with_context(|| format!("cannot lock {}", path.display()))?;
            if !quiet && started.elapsed() > Duration::from_secs(1) {
                eprintln!(
                    "got {} after {:.0} s",
                    path.display(),
                    started.elapsed().as_secs_f64()
                );
            }
        }
        Ok(Self { _file: file })
    }
}

/// The lock file guarding directory `dir`: `dir` with `.lock` appended.
pub(crate) fn lock_path(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_owned();
    name.push(".lock");
    dir.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn threads_take_turns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a").join("x.lock");
        let inside = AtomicUsize::new(0);
        let max_inside = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..5 {
                        let _l = Lock::acquire(&path, true).unwrap();
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        max_inside.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(2));
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(max_inside.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn lock_path_is_a_sibling() {
        assert_eq!(
            lock_path(Path::new("/b/cells/nih/m/linear/seed-0")),
            Path::new("/b/cells/nih/m/linear/seed-0.lock")
        );
    }
}
