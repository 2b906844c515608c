//! Writing results without leaving half-written files: every file goes to a
//! temporary sibling and is renamed into place; a directory created for a run
//! is removed again if the run fails before finishing.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Writes `bytes` to `path` atomically (temporary file in the same directory,
/// flushed, then renamed).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    cxr_data::atomic::write_atomic(path, bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// An output directory for one command. Created on demand; if it did not exist
/// before and the command fails, dropping the guard removes it.
pub struct OutputDir {
    path: PathBuf,
    created: bool,
    committed: bool,
}

impl OutputDir {
    /// Creates `path` (and parents) if missing.
    pub fn create(path: &Path) -> Result<Self> {
        let created = !path.exists();
        fs::create_dir_all(path)
            .with_context(|| format!("cannot create output directory {}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            created,
            committed: false,
        })
    }

    /// Writes one file inside the directory, atomically.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.path.join(name), bytes)
    }

    /// Marks the output complete: it is kept from now on.
    pub fn commit(mut self) {
        self.committed = true;
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        if self.created && !self.committed {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}
