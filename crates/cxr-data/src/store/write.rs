//! Writing a store: everything goes to a hidden sibling temporary directory that
//! is renamed onto `--out` only when complete; dropping the writer early removes it.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};

use super::DatasetMeta;
use crate::claim::{Claim, Wait};
use crate::error::{DataError, Result};

/// Incremental writer of one store.
#[derive(Debug)]
pub struct StoreWriter {
    out: PathBuf,
    tmp: PathBuf,
    force: bool,
    pixels_per_image: usize,
    size: [u32; 2],
    shard_len: usize,
    buffer: Vec<u8>,
    in_buffer: usize,
    shards: usize,
    images: usize,
    done: bool,
    /// Held until the store is in place: a second writer to the same
    /// `--out` fails at once, and no live writer's partial directory is
    /// mistaken for a killed one's.
    _claim: Claim,
}

/// True when `path` exists and is a non-empty directory or any other file.
fn occupied(path: &Path) -> bool {
    match fs::read_dir(path) {
        Ok(mut entries) => entries.next().is_some(),
        Err(_) => path.exists(),
    }
}

impl StoreWriter {
    /// Starts a store at `out` (refused when `out` is occupied, unless `force`).
    pub fn create(out: &Path, force: bool, size: [u32; 2], shard_len: usize) -> Result<Self> {
        let claim = Claim::acquire(out, Wait::No, |_| {})?;
        if occupied(out) {
            if !force {
                return Err(DataError::OutputExists(out.to_path_buf()));
            }
            // A mistyped --out (a home directory) is refused, not emptied.
            if !out.join("dataset.json").is_file() {
                return Err(DataError::NotOurs {
                    path: out.to_path_buf(),
                    marker: "dataset.json",
                });
            }
        }
        let name = out
            .file_name()
            .ok_or_else(|| DataError::layout(out, "not a valid output directory"))?;
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(|e| DataError::io(&parent, e))?;
        let stem = format!(".{}.partial-", name.to_string_lossy());
        // A killed run (SIGKILL, power loss) cannot clean up after itself: its
        // partial directory is removed by the next run for the same output.
        for entry in fs::read_dir(&parent)
            .map_err(|e| DataError::io(&parent, e))?
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with(&stem) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        let tmp = parent.join(format!("{stem}{}", std::process::id()));
        fs::create_dir(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        let pixels_per_image = size[0] as usize * size[1] as usize;
        Ok(Self {
            out: out.to_path_buf(),
            tmp,
            force,
            pixels_per_image,
            size,
            shard_len: shard_len.max(1),
            buffer: Vec::new(),
            in_buffer: 0,
            shards: 0,
            images: 0,
            done: false,
            _claim: claim,
        })
    }

    /// Appends one image (`H*W` bytes) in manifest order.
    pub fn push(&mut self, image: &[u8]) -> Result<()> {
        if image.len() != self.pixels_per_image {
            return Err(DataError::Config(format!(
                "store image has {} bytes, expected {}",
                image.len(),
                self.pixels_per_image
            )));
        }
        self.buffer.extend_from_slice(image);
        self.in_buffer += 1;
        self.images += 1;
        if self.in_buffer == self.shard_len {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.in_buffer == 0 {
            return Ok(());
        }
        let path = self
            .tmp
            .join(format!("images-{:05}.safetensors", self.shards));
        let shape = vec![self.in_buffer, self.size[0] as usize, self.size[1] as usize];
        let view =
            TensorView::new(Dtype::U8, shape, &self.buffer).map_err(|e| DataError::Store {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        safetensors::serialize_to_file([("images", view)], None, &path).map_err(|e| {
            DataError::Store {
                path: path.clone(),
                reason: e.to_string(),
            }
        })?;
        self.buffer.clear();
        self.in_buffer = 0;
        self.shards += 1;
        Ok(())
    }

    /// Number of images pushed so far.
    pub fn images(&self) -> usize {
        self.images
    }

    /// Number of shards that `finish` will have written.
    pub fn shards(&self) -> usize {
        self.shards + usize::from(self.in_buffer > 0)
    }

    /// Writes a text file (manifest, CSV side files) into the store.
    pub fn write_file(&self, name: &str, contents: &[u8]) -> Result<()> {
        let path = self.tmp.join(name);
        let mut f = fs::File::create(&path).map_err(|e| DataError::io(&path, e))?;
        f.write_all(contents).map_err(|e| DataError::io(&path, e))
    }

    /// Flushes the last shard, writes `dataset.json` and moves the store into place.
    pub fn finish(mut self, meta: &DatasetMeta) -> Result<PathBuf> {
        self.flush()?;
        let json = serde_json::to_vec_pretty(meta)?;
        self.write_file("dataset.json", &json)?;
        if self.out.exists() {
            if occupied(&self.out) && !self.force {
                return Err(DataError::OutputExists(self.out.clone()));
            }
            let r = if self.out.is_dir() {
                fs::remove_dir_all(&self.out)
            } else {
                fs::remove_file(&self.out)
            };
            r.map_err(|e| DataError::io(&self.out, e))?;
        }
        fs::rename(&self.tmp, &self.out).map_err(|e| DataError::io(&self.out, e))?;
        self.done = true;
        Ok(self.out.clone())
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}
