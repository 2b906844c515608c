//! Writing results without leaving half-written files: every file goes to a
//! temporary sibling and is renamed into place; a directory created for a run
//! is removed again if the run fails before finishing.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Writes `bytes` to `path` atomically (temporary file in the same directory,
/// flushed, then renamed).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
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
