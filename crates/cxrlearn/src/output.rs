//! Where results go, and the rules that keep two runs' files apart:
//!
//! - every file goes to a temporary sibling and is renamed into place;
//! - an output is claimed for one process ([`cxr_data::claim`]), so a second
//!   command started into the same `--out` fails at once instead of mixing
//!   its files with the first one's;
//! - an `--out` that already holds files is refused unless `--force` (the
//!   previous output is moved aside, deleted when the new run finishes and
//!   put back if it fails) or, for the training commands, `--resume`;
//! - a directory created for a run is removed again if the run fails.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cxr_data::claim::{Claim, Wait};

/// Writes `bytes` to `path` atomically (temporary file in the same directory,
/// flushed, then renamed).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    cxr_data::atomic::write_atomic(path, bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// What a command does with an `--out` that already holds files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Refuse it: the files are another run's (or someone's).
    Refuse,
    /// `--force`: replace a previous cxrlearn output.
    Replace,
    /// `--resume`: continue the run it holds (checked by the caller).
    Resume,
}

impl Existing {
    /// From a command's `--force` and `--resume` (clap keeps them apart).
    pub fn from_flags(force: bool, resume: bool) -> Self {
        match (force, resume) {
            (_, true) => Self::Resume,
            (true, false) => Self::Replace,
            (false, false) => Self::Refuse,
        }
    }
}

/// Files the benchmark runner keeps in a cell's directory beside the run it
/// starts there: the only entries an `--out` may hold and still count as
/// empty. (Lock files of outputs inside `--out` are hidden siblings that
/// exist only while their command runs.)
const BOOKKEEPING: [&str; 3] = ["cell.json", "benchmark.log", "benchmark.json"];

/// Files by which `--force` recognises an output cxrlearn wrote: a run's
/// `config.toml`, `evaluate`'s `evaluation.json`, a features cache's
/// `meta.json`. `--force` replaces nothing else, so a mistyped `--out` (a
/// home directory) is refused, not emptied.
const MARKERS: [&str; 3] = ["config.toml", "evaluation.json", "meta.json"];

/// An output directory claimed by one command.
pub struct OutputDir {
    path: PathBuf,
    created: bool,
    committed: bool,
    /// Where `--force` moved the previous output's entries.
    replaced: Option<PathBuf>,
    _claim: Claim,
}

impl OutputDir {
    /// Claims `path` (creating it and its parents if missing) and applies
    /// `existing` to what it holds. `resume_hint` is added to the refusal
    /// of a non-empty directory (", continue it with --resume" for the
    /// training commands).
    pub fn create(path: &Path, existing: Existing, resume_hint: &str) -> Result<Self> {
        let claim = Claim::acquire(path, Wait::No, |_| {})?;
        Self::with_claim(claim, path, existing, resume_hint)
    }

    /// [`OutputDir::create`] under a claim on `path` the caller already
    /// holds (a cache that waited for its turn).
    pub fn with_claim(
        claim: Claim,
        path: &Path,
        existing: Existing,
        resume_hint: &str,
    ) -> Result<Self> {
        let created = match fs::create_dir(path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if !path.is_dir() {
                    bail!("{} exists and is not a directory", path.display());
                }
                false
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot create output directory {}", path.display()));
            }
        };
        let mut out = Self {
            path: path.to_owned(),
            created,
            committed: false,
            replaced: None,
            _claim: claim,
        };
        remove_stale_trash(path);
        let held = entries(path)?;
        if held.is_empty() || existing == Existing::Resume {
            return Ok(out);
        }
        let names: Vec<String> = held
            .iter()
            .take(4)
            .map(|p| {
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        let more = if held.len() > 4 { ", ..." } else { "" };
        let what = if path.join("config.toml").is_file() {
            "already holds a run"
        } else {
            "is not empty"
        };
        if existing == Existing::Refuse {
            bail!(
                "{} {what} ({}{more}){resume_hint}; replace it with --force or choose another --out",
                path.display(),
                names.join(", ")
            );
        }
        if !MARKERS.iter().any(|m| path.join(m).is_file()) {
            bail!(
                "{} holds files cxrlearn did not write ({}{more}; no {}): --force replaces only a \
                 previous cxrlearn output; choose another --out",
                path.display(),
                names.join(", "),
                MARKERS.join(", ")
            );
        }
        let trash = trash_dir(path);
        fs::create_dir(&trash).with_context(|| format!("cannot create {}", trash.display()))?;
        out.replaced = Some(trash.clone());
        for entry in held {
            let to = trash.join(entry.file_name().unwrap_or_default());
            fs::rename(&entry, &to)
                .with_context(|| format!("cannot move {} aside", entry.display()))?;
        }
        Ok(out)
    }

    /// Writes one file inside the directory, atomically.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.path.join(name), bytes)
    }

    /// Marks the output complete: it is kept from now on, and what
    /// `--force` replaced is deleted.
    pub fn commit(mut self) {
        self.committed = true;
        if let Some(trash) = self.replaced.take() {
            let _ = fs::remove_dir_all(trash);
        }
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if self.created {
            let _ = fs::remove_dir_all(&self.path);
            return;
        }
        // A failed --force run: its own files go, the previous output
        // comes back.
        if let Some(trash) = self.replaced.take() {
            for entry in entries(&self.path).unwrap_or_default() {
                let _ = if entry.is_dir() {
                    fs::remove_dir_all(&entry)
                } else {
                    fs::remove_file(&entry)
                };
            }
            for entry in fs::read_dir(&trash).into_iter().flatten().flatten() {
                let _ = fs::rename(entry.path(), self.path.join(entry.file_name()));
            }
            let _ = fs::remove_dir(&trash);
        }
    }
}

/// The entries of `dir` other than the benchmark runner's bookkeeping.
fn entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut held = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let name = entry.file_name();
        if !BOOKKEEPING.iter().any(|b| name == *b) {
            held.push(entry.path());
        }
    }
    held.sort();
    Ok(held)
}

/// `.NAME.replaced-PID` beside `path`: where `--force` moves the previous
/// output until the new one is complete.
fn trash_dir(path: &Path) -> PathBuf {
    sibling(path, &format!("replaced-{}", std::process::id()))
}

fn sibling(path: &Path, tag: &str) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let name = abs.file_name().unwrap_or_default().to_string_lossy();
    let parent = abs.parent().unwrap_or(Path::new("."));
    parent.join(format!(".{name}.{tag}"))
}

/// Removes what a killed `--force` run left beside `path` (called under the
/// claim, so no live run owns it: the user asked for that output to be
/// replaced).
fn remove_stale_trash(path: &Path) {
    let stem = sibling(path, "replaced-");
    let (Some(parent), Some(prefix)) = (stem.parent(), stem.file_name()) else {
        return;
    };
    let prefix = prefix.to_string_lossy();
    for entry in fs::read_dir(parent).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&*prefix) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Claims an output file (`predict --out`, `import --out`): refused when it
/// exists unless `force`. The claim is held until the returned guard drops.
pub fn claim_file(path: &Path, force: bool) -> Result<Claim> {
    let claim = Claim::acquire(path, Wait::No, |_| {})?;
    if path.is_dir() {
        bail!("{} is a directory; --out names a file", path.display());
    }
    if path.exists() && !force {
        bail!(
            "{} exists; replace it with --force or choose another --out",
            path.display()
        );
    }
    Ok(claim)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_directory_with_files_is_refused_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        fs::create_dir(&out).unwrap();
        fs::write(out.join("config.toml"), "a").unwrap();
        fs::write(out.join("log.jsonl"), "old").unwrap();
        let e = OutputDir::create(&out, Existing::Refuse, ", continue it with --resume")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("already holds a run (config.toml, log.jsonl)"),
            "{e}"
        );
        assert!(
            e.contains("continue it with --resume; replace it with --force"),
            "{e}"
        );

        // --force moves the old run aside and deletes it on commit.
        let o = OutputDir::create(&out, Existing::Replace, "").unwrap();
        assert!(files(&out).is_empty());
        o.write("config.toml", b"b").unwrap();
        o.commit();
        assert_eq!(files(&out), ["config.toml"]);
        assert_eq!(fs::read(out.join("config.toml")).unwrap(), b"b");
        assert_eq!(files(dir.path()), ["run"], "nothing left beside it");
    }

    #[test]
    fn a_failed_forced_run_puts_the_previous_one_back() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        fs::create_dir(&out).unwrap();
        fs::write(out.join("evaluation.json"), "old").unwrap();
        fs::write(out.join("cell.json"), "record").unwrap();
        {
            let o = OutputDir::create(&out, Existing::Replace, "").unwrap();
            assert_eq!(files(&out), ["cell.json"], "bookkeeping stays");
            o.write("evaluation.json", b"new, half done").unwrap();
            o.write("evaluation.md", b"new").unwrap();
        }
        assert_eq!(files(&out), ["cell.json", "evaluation.json"]);
        assert_eq!(fs::read(out.join("evaluation.json")).unwrap(), b"old");
        assert_eq!(files(dir.path()), ["run"]);
    }

    #[test]
    fn force_replaces_only_what_cxrlearn_wrote() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("thesis.tex"), "years of work").unwrap();
        let e = OutputDir::create(dir.path(), Existing::Replace, "")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("holds files cxrlearn did not write (thesis.tex"),
            "{e}"
        );
        assert_eq!(
            fs::read(dir.path().join("thesis.tex")).unwrap(),
            b"years of work"
        );
    }

    #[test]
    fn a_second_writer_fails_at_once_and_the_first_keeps_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        let first = OutputDir::create(&out, Existing::Refuse, "").unwrap();
        let e = OutputDir::create(&out, Existing::Replace, "")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("being written by another cxrlearn process"),
            "{e}"
        );
        assert!(out.is_dir(), "the loser removed nothing");
        first.write("config.toml", b"x").unwrap();
        first.commit();
        assert_eq!(files(&out), ["config.toml"]);
    }

    #[test]
    fn bookkeeping_alone_counts_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("cell.json"), "{}").unwrap();
        fs::write(dir.path().join("benchmark.log"), "").unwrap();
        OutputDir::create(dir.path(), Existing::Refuse, "")
            .unwrap()
            .commit();
    }

    #[test]
    fn an_existing_file_is_refused_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.csv");
        drop(claim_file(&f, false).unwrap());
        fs::write(&f, "x").unwrap();
        let e = claim_file(&f, false).err().unwrap().to_string();
        assert!(e.contains("exists; replace it with --force"), "{e}");
        drop(claim_file(&f, true).unwrap());
        let held = claim_file(&f, true).unwrap();
        let e = claim_file(&f, true).err().unwrap().to_string();
        assert!(e.contains("being written by another"), "{e}");
        drop(held);
    }
}
