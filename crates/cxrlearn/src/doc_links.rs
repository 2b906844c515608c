//! The repository stands on its own: every Markdown file a doc comment,
//! script or document names must exist in it (relative to the repository's
//! root or to the naming file's folder), so no reference points at notes a
//! person who clones the repository does not have.

use std::path::{Path, PathBuf};

/// Markdown files the commands write (`evaluate`, `benchmark`, the GPU
/// check): outputs named in code and docs, not references to documents.
const WRITTEN: [&str; 3] = ["evaluation.md", "report.md", "gpu-check.md"];

/// The Markdown file names in `text` (`docs/statistics.md`, `README.md`, ...).
fn md_names(text: &str) -> Vec<&str> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/');
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(".md") {
        let after = rest[at + 3..].chars().next();
        let start = rest[..at]
            .char_indices()
            .rev()
            .find(|&(_, c)| !allowed(c))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let name = &rest[start..at + 3];
        // A name ends the word (not `.mdx`), and has a stem.
        if !after.is_some_and(|c| c.is_ascii_alphanumeric())
            && name.len() > 3
            && !name.starts_with('.')
        {
            out.push(name);
        }
        rest = &rest[at + 3..];
    }
    out
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            // third_party/ holds other projects' code as published.
            if !matches!(name.as_ref(), "target" | "runs" | ".git" | "third_party")
                && !name.starts_with(".venv")
            {
                sources(&path, out);
            }
        } else if ["rs", "md", "sh", "py", "toml"]
            .iter()
            .any(|e| path.extension().is_some_and(|x| x == *e))
        {
            out.push(path);
        }
    }
}

#[test]
fn every_named_markdown_file_is_in_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(
        files.len() > 100,
        "found only {} files under {}",
        files.len(),
        root.display()
    );
    let mut missing = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        // This file's own test text names example files.
        if file.ends_with("src/doc_links.rs") {
            continue;
        }
        for name in md_names(&text) {
            let base = name.rsplit('/').next().unwrap_or(name);
            if WRITTEN.contains(&base) {
                continue;
            }
            let here = file.parent().map(|d| d.join(name));
            if !root.join(name).is_file() && !here.is_some_and(|p| p.is_file()) {
                let shown = file.strip_prefix(&root).unwrap_or(file);
                missing.push(format!("{}: {name}", shown.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "Markdown files named but not in the repository:\n{}",
        missing.join("\n")
    );
}

#[test]
fn markdown_names_are_found_in_text() {
    assert_eq!(
        md_names("see docs/statistics.md, [x](formats.md) and README.md; not .md or a.mdx"),
        ["docs/statistics.md", "formats.md", "README.md"]
    );
}
