//! Shared helpers of the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The real third-party file `name` fetched by `scripts/fetch-test-data.sh`.
/// Unset `CXRLEARN_TEST_DATA`: fails under CI (`CI=true`), else skips with a note.
pub fn real_data(name: &str) -> Option<PathBuf> {
    match std::env::var_os("CXRLEARN_TEST_DATA") {
        Some(dir) => {
            let p = Path::new(&dir).join(name);
            assert!(
                p.is_file(),
                "{} is missing: run scripts/fetch-test-data.sh",
                p.display()
            );
            Some(p)
        }
        None => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CXRLEARN_TEST_DATA is not set in CI: scripts/test.sh runs scripts/fetch-test-data.sh and sets it"
            );
            eprintln!("note: CXRLEARN_TEST_DATA unset, skipping the real-data test on {name}");
            None
        }
    }
}

/// A dataset root holding `file` under `name` (a symlink to the cached copy).
pub fn root_with(files: &[(&Path, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (src, name) in files {
        let dst = dir.path().join(name);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(src, dst).unwrap();
    }
    dir
}

/// Writes an 8-bit grayscale PNG with a horizontal gradient.
pub fn write_png(path: &Path, w: u32, h: u32, base: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::GrayImage::from_fn(w, h, |x, _| {
        image::Luma([base.wrapping_add((x * 255 / w.max(1)) as u8)])
    });
    img.save(path).unwrap();
}
