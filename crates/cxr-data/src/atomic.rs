//! Files that are either complete or absent: the bytes go to a temporary
//! sibling (`tempfile`), are flushed to disk, and the file is persisted
//! (renamed) over the target, so a kill or a full disk mid-write leaves the
//! previous version intact. The one implementation the workspace's crates
//! call (cxr-report, which reads no stores, has its own `tempfile` call).

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically. The file gets the mode a plain
/// `File::create` gives (0666 less the umask), not `tempfile`'s private
/// 0600: results are meant to be read by others.
///
/// # Errors
/// The I/O error (it does not name the path: callers wrap it with theirs);
/// the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".").suffix(".tmp");
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut file = builder.tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::write_atomic;

    #[test]
    fn replaces_the_file_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.txt");
        write_atomic(&f, b"one").unwrap();
        write_atomic(&f, b"two").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&f).unwrap().permissions().mode();
            // Readable by others unless the umask says otherwise.
            assert_eq!(mode & 0o600, 0o600);
        }
        let e = write_atomic(&dir.path().join("no/such/dir/x"), b"").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }
}
