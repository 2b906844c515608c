//! Reading the entries of a `torch.save` zip archive.
//!
//! `torch.save` writes uncompressed ("stored") entries, padded so tensor data
//! is aligned. General zip crates reject some valid archives written this way
//! (a central directory they consider invalid), so this reader takes the entry
//! list from the central directory when it parses and otherwise walks the local
//! file headers from the start, which `torch.save` always writes in order. Only
//! stored entries are supported; a compressed entry is an error that names it.

use std::collections::BTreeMap;
use std::ops::Range;

use super::CheckpointError;

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_CENTRAL: u32 = 0x0605_4b50;
const ZIP64_END: u32 = 0x0606_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;

// Offsets come from the file, so `at + n` is checked: a hostile offset near
// `usize::MAX` reads as missing instead of overflowing.
fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// The stored entries of an archive: name to byte range within the file.
#[derive(Debug, Default)]
pub struct ZipEntries {
    entries: BTreeMap<String, Range<usize>>,
}

impl ZipEntries {
    /// Indexes the archive in `bytes`.
    ///
    /// # Errors
    /// [`CheckpointError::Format`] for a truncated or compressed archive.
    pub fn parse(bytes: &[u8]) -> Result<Self, CheckpointError> {
        match Self::from_central_directory(bytes) {
            Some(Ok(entries)) if !entries.entries.is_empty() => Ok(entries),
            Some(Err(e)) => Err(e),
            _ => Self::from_local_headers(bytes),
        }
    }

    /// The entry names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The bytes of entry `name`.
    pub fn get<'a>(&self, bytes: &'a [u8], name: &str) -> Option<&'a [u8]> {
        self.entries.get(name).map(|r| &bytes[r.clone()])
    }

    /// The entry `{folder}{suffix}` directly under the single top-level folder
    /// `torch.save` puts every entry in (named after the file it first saved
    /// to, so it varies).
    pub fn find_suffix(&self, suffix: &str) -> Option<&str> {
        self.names()
            .find(|n| n.strip_suffix(suffix).is_some_and(|top| !top.contains('/')))
    }

    fn data_range(
        bytes: &[u8],
        local_offset: usize,
        size: usize,
        name: &str,
    ) -> Result<Range<usize>, CheckpointError> {
        let truncated = || CheckpointError::format(format!("zip entry '{name}' is truncated"));
        if u32_at(bytes, local_offset) != Some(LOCAL_HEADER) {
            return Err(CheckpointError::format(format!(
                "zip entry '{name}' has no local header at offset {local_offset}"
            )));
        }
        // The local header was found at `local_offset`, so it lies in the
        // file and these sums stay far below `usize::MAX`.
        let name_len = usize::from(u16_at(bytes, local_offset + 26).ok_or_else(truncated)?);
        let extra_len = usize::from(u16_at(bytes, local_offset + 28).ok_or_else(truncated)?);
        let start = local_offset + 30 + name_len + extra_len;
        let end = start.checked_add(size).ok_or_else(truncated)?;
        if end > bytes.len() {
            return Err(truncated());
        }
        Ok(start..end)
    }

    /// `None` when there is no readable central directory.
    fn from_central_directory(bytes: &[u8]) -> Option<Result<Self, CheckpointError>> {
        // The end record is in the last 64 KiB + 22 bytes (comment length).
        let search_from = bytes.len().saturating_sub(65_557);
        let eocd = (search_from..bytes.len().saturating_sub(21))
            .rev()
            .find(|&i| u32_at(bytes, i) == Some(END_OF_CENTRAL))?;
        let mut count = u64::from(u16_at(bytes, eocd + 10)?);
        let mut cd_offset = u64::from(u32_at(bytes, eocd + 16)?);
        if (count == 0xFFFF || cd_offset == 0xFFFF_FFFF)
            && eocd >= 20
            && u32_at(bytes, eocd - 20) == Some(ZIP64_LOCATOR)
        {
            let z64 = usize::try_from(u64_at(bytes, eocd - 12)?).ok()?;
            if u32_at(bytes, z64) != Some(ZIP64_END) {
                return None;
            }
            count = u64_at(bytes, z64 + 32)?;
            cd_offset = u64_at(bytes, z64 + 48)?;
        }
        let mut at = usize::try_from(cd_offset).ok()?;
        let mut entries = BTreeMap::new();
        for _ in 0..count {
            if u32_at(bytes, at) != Some(CENTRAL_HEADER) {
                return None;
            }
            let method = u16_at(bytes, at + 10)?;
            let mut size = u64::from(u32_at(bytes, at + 20)?);
            let name_len = usize::from(u16_at(bytes, at + 28)?);
            let extra_len = usize::from(u16_at(bytes, at + 30)?);
            let comment_len = usize::from(u16_at(bytes, at + 32)?);
            let mut local = u64::from(u32_at(bytes, at + 42)?);
            let name =
                String::from_utf8_lossy(bytes.get(at + 46..at + 46 + name_len)?).into_owned();
            // Zip64 extra field: the 0xFFFFFFFF fields follow in a fixed order.
            let extra = bytes.get(at + 46 + name_len..at + 46 + name_len + extra_len)?;
            let mut e = 0;
            while e + 4 <= extra.len() {
                let id = u16_at(extra, e)?;
                let len = usize::from(u16_at(extra, e + 2)?);
                if id == 1 {
                    let mut f = e + 4;
                    if u32_at(bytes, at + 24)? == 0xFFFF_FFFF {
                        f += 8; // uncompressed size
                    }
                    if size == 0xFFFF_FFFF {
                        size = u64_at(extra, f)?;
                        f += 8;
                    }
                    if local == 0xFFFF_FFFF {
                        local = u64_at(extra, f)?;
                    }
                }
                e += 4 + len;
            }
            if method != 0 {
                return Some(Err(CheckpointError::format(format!(
                    "zip entry '{name}' is compressed (method {method}); torch.save archives are stored"
                ))));
            }
            let range = match Self::data_range(
                bytes,
                usize::try_from(local).ok()?,
                usize::try_from(size).ok()?,
                &name,
            ) {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            };
            entries.insert(name, range);
            at += 46 + name_len + extra_len + comment_len;
        }
        Some(Ok(Self { entries }))
    }

    fn from_local_headers(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let mut entries = BTreeMap::new();
        let mut at = 0;
        while u32_at(bytes, at) == Some(LOCAL_HEADER) {
            let bad = || CheckpointError::format("truncated zip local header".into());
            let flags = u16_at(bytes, at + 6).ok_or_else(bad)?;
            let method = u16_at(bytes, at + 8).ok_or_else(bad)?;
            let size = u32_at(bytes, at + 18).ok_or_else(bad)?;
            let name_len = usize::from(u16_at(bytes, at + 26).ok_or_else(bad)?);
            let name =
                String::from_utf8_lossy(bytes.get(at + 30..at + 30 + name_len).ok_or_else(bad)?)
                    .into_owned();
            if method != 0 {
                return Err(CheckpointError::format(format!(
                    "zip entry '{name}' is compressed (method {method}); torch.save archives are stored"
                )));
            }
            if flags & 0x08 != 0 || size == 0xFFFF_FFFF {
                return Err(CheckpointError::format(format!(
                    "zip entry '{name}' has no size in its local header and the central directory is unreadable"
                )));
            }
            let range = Self::data_range(bytes, at, size as usize, &name)?;
            at = range.end;
            entries.insert(name, range);
        }
        if entries.is_empty() {
            return Err(CheckpointError::format(
                "not a readable zip archive (no entries found)".into(),
            ));
        }
        Ok(Self { entries })
    }
}
