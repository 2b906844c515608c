//! A walk over a DICOM file's element headers before `dicom-object` reads
//! it: every declared value length must fit in the bytes that are left.
//!
//! `dicom-object` allocates each value at its declared length (zero-filled)
//! before reading it, so a 9 KB file declaring a 4 GiB element costs 4 GiB
//! of memory before the read fails; it offers no bound of its own. The walk
//! reads headers with the transfer syntax's own decoder (`dicom-encoding`:
//! explicit or implicit VR, either byte order) and skips values without
//! keeping them, so it allocates nothing that grows with a declared length.

use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::Path;

use dicom_core::header::{HasLength, Header};
use dicom_core::{Tag, VR};
use dicom_encoding::TransferSyntaxIndex;
use dicom_encoding::transfer_syntax::Codec;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::DecodeLimits;
use crate::error::{DataError, Result};

const TRANSFER_SYNTAX_UID: Tag = Tag(0x0002, 0x0010);
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_DELIMITER: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_DELIMITER: Tag = Tag(0xFFFE, 0xE0DD);
/// The widest sample DICOM stores (64-bit float pixel data).
const MAX_BYTES_PER_SAMPLE: u64 = 8;
/// Room for the non-pixel elements of a deflated data set, above the
/// largest pixel data the limit admits.
const DEFLATED_HEADER_ROOM: u64 = 64 << 20;

/// A reader that counts what it has given out, against a budget: the bytes
/// left in the file, or for a deflated data set (whose inflated size the
/// file does not say) the most the pixel limit admits.
struct Budgeted<R> {
    inner: R,
    read: u64,
    budget: u64,
}

impl<R: BufRead> Budgeted<R> {
    fn left(&self) -> u64 {
        self.budget.saturating_sub(self.read)
    }

    fn at_end(&mut self) -> bool {
        self.inner.fill_buf().map(|b| b.is_empty()).unwrap_or(true)
    }

    /// Skips `len` bytes, reading them through a small buffer; false when
    /// the data ends first.
    fn skip(&mut self, len: u64) -> bool {
        io::copy(&mut self.by_ref().take(len), &mut io::sink()).ok() == Some(len)
    }
}

impl<R: BufRead> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// Checks `body` (a Part 10 file from its `DICM` magic) element by element:
/// the file meta group, then the data set in its transfer syntax. A length
/// beyond the bytes left is refused, naming the element, before anything of
/// that length is allocated. What the walk cannot read (no magic, an
/// unknown transfer syntax, a garbled header) is left to `dicom-object`,
/// which reports it: past that point no element has been declared.
pub(super) fn check_lengths(path: &Path, body: &[u8], limits: &DecodeLimits) -> Result<()> {
    let Some(meta_and_rest) = body.strip_prefix(b"DICM") else {
        return Ok(());
    };
    let mut meta = Budgeted {
        inner: Cursor::new(meta_and_rest),
        read: 0,
        budget: meta_and_rest.len() as u64,
    };
    let explicit_le = dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased();
    let Some(decoder) = explicit_le.decoder_for::<dyn Read>() else {
        return Ok(());
    };
    // The file meta group, always explicit VR little endian, read the way
    // `dicom-object` reads it: a group length (0002,0000) of 4 bytes, then
    // elements until that many bytes are read, whatever their group (it
    // skips off-group tags). Stopping at the first tag outside group 0002
    // instead would leave the rest of the file unchecked while
    // `dicom-object` still reads the data set after the declared group
    // (the two fuzz findings in fuzz/regressions/dicom/ that cost 3.4 and
    // 4.2 GB were exactly that). A meta group it refuses is left to it.
    let Ok((first, _)) = decoder.decode_header(&mut meta) else {
        return Ok(());
    };
    let mut group_length = [0; 4];
    if first.tag() != Tag(0x0002, 0x0000)
        || first.length().get() != Some(4)
        || meta.read_exact(&mut group_length).is_err()
    {
        return Ok(());
    }
    let group_length = u32::from_le_bytes(group_length);
    let mut uid = None;
    let mut total = 0u32;
    while total < group_length {
        let Ok((header, header_len)) = decoder.decode_header(&mut meta) else {
            return Ok(());
        };
        if header.length().is_undefined() {
            return Ok(());
        }
        let len = declared(path, &header, meta.left())?;
        if header.tag() == TRANSFER_SYNTAX_UID {
            // Kept whatever its length (`declared` bounded it by the file),
            // as `dicom-object` keeps it: the registry trims the padding.
            let mut value = vec![0; len as usize];
            if meta.read_exact(&mut value).is_err() {
                return Ok(());
            }
            uid = Some(String::from_utf8_lossy(&value).into_owned());
        } else if !meta.skip(u64::from(len)) {
            return Ok(());
        }
        total = total.saturating_add(header_len as u32).saturating_add(len);
    }
    let Some(ts) = uid.as_deref().and_then(|u| TransferSyntaxRegistry.get(u)) else {
        return Ok(());
    };
    let data_set = &meta_and_rest[meta.read as usize..];
    match ts.codec() {
        Codec::Dataset(Some(adapter)) => {
            // Deflated: the walk inflates as it goes, up to the largest data
            // set the pixel limit admits (inflating further is itself the
            // cost a deflate bomb imposes).
            let budget = limits
                .max_pixels
                .saturating_mul(MAX_BYTES_PER_SAMPLE)
                .saturating_add(DEFLATED_HEADER_ROOM);
            let inflated = adapter.adapt_reader(Box::new(data_set));
            walk(path, ts, BufReader::new(inflated), budget)
        }
        Codec::Dataset(None) => Ok(()),
        _ => walk(path, ts, Cursor::new(data_set), data_set.len() as u64),
    }
}

/// Walks a data set's elements to its end, in the states of
/// `dicom-parser`'s `DataSetReader` (0.10), so that every header the parser
/// will size a value from is a header checked here:
///
/// - after a sequence starts, and after each of its items ends, it reads
///   item headers; inside an item, element headers;
/// - a sequence or item of defined length ends when the position reaches
///   its end (no delimiter);
/// - an item header met where an element header is expected is read as a
///   plain element (its value skipped), not entered: a hostile file that
///   puts items outside any sequence shifts every header after it, and a
///   walk that entered them would check other headers than the parser
///   reads (a fuzzed 2.7 KB file made it reserve 1.3 GB that way);
/// - inside encapsulated pixel data, items hold compressed fragments.
fn walk<R: BufRead>(
    path: &Path,
    ts: &dicom_encoding::TransferSyntax,
    source: R,
    budget: u64,
) -> Result<()> {
    let Some(decoder) = ts.decoder_for::<dyn Read>() else {
        return Ok(());
    };
    let mut src = Budgeted {
        inner: source,
        read: 0,
        budget,
    };
    // Open sequences and items: (is an item, end position if defined).
    let mut open: Vec<(bool, Option<u64>)> = Vec::new();
    // Reading item headers (right after a sequence starts or an item ends).
    let mut in_sequence = false;
    let mut in_fragments = false;
    loop {
        while let Some(&(is_item, Some(end))) = open.last() {
            if src.read < end {
                break;
            }
            open.pop();
            in_sequence = is_item;
        }
        if src.at_end() {
            return Ok(());
        }
        let Ok((header, _)) = decoder.decode_header(&mut src) else {
            // The parser stops at the same header with an error.
            return Ok(());
        };
        let tag = header.tag();
        if in_fragments {
            match tag {
                ITEM => {
                    let len = declared(path, &header, src.left())?;
                    skip(path, &mut src, tag, len)?;
                }
                SEQUENCE_DELIMITER => in_fragments = false,
                // The parser takes an item delimiter among the fragments as
                // the end of an item and reads on; stopping the walk here
                // left everything after the pixel data unchecked (a fuzzed
                // 33 KB file then made it reserve 4.06 GB: finding 9).
                ITEM_DELIMITER => {}
                _ => return Ok(()),
            }
            continue;
        }
        if in_sequence {
            match tag {
                ITEM => {
                    let end = if header.length().is_undefined() {
                        None
                    } else {
                        let len = declared(path, &header, src.left())?;
                        Some(src.read + u64::from(len))
                    };
                    open.push((true, end));
                    in_sequence = false;
                }
                ITEM_DELIMITER => {
                    open.pop();
                    in_sequence = true;
                }
                SEQUENCE_DELIMITER => {
                    open.pop();
                    in_sequence = false;
                }
                // The parser refuses any other header here and stops.
                _ => return Ok(()),
            }
            continue;
        }
        if tag == ITEM_DELIMITER && !open.is_empty() {
            open.pop();
            in_sequence = true;
            continue;
        }
        if tag == PIXEL_DATA && header.length().is_undefined() {
            in_fragments = true;
            continue;
        }
        if header.length().is_undefined() {
            // A sequence, or another element of undefined length, which the
            // parser also reads as a sequence.
            open.push((false, None));
            in_sequence = true;
            continue;
        }
        let len = declared(path, &header, src.left())?;
        if header.vr() == VR::SQ {
            open.push((false, Some(src.read + u64::from(len))));
            in_sequence = true;
        } else {
            skip(path, &mut src, tag, consumed(header.vr(), len))?;
        }
    }
}

/// The bytes the parser reads of a value of `len` declared bytes: a
/// numeric value is read as whole numbers (`len / size` of them), so a
/// length that is not a multiple of the size leaves its remainder to be read
/// as the start of the next header (a fuzzed file declared a UL of 12,149
/// bytes, and the parser's next header, one byte early, declared 3.4 GB).
fn consumed(vr: VR, len: u32) -> u32 {
    let size = match vr {
        VR::US | VR::OW | VR::SS => 2,
        VR::AT | VR::UL | VR::OL | VR::SL | VR::FL | VR::OF => 4,
        VR::FD | VR::OD | VR::SV | VR::UV | VR::OV => 8,
        _ => 1,
    };
    len - len % size
}

/// Skips an element's value of `len` bytes, refused when the data ends
/// first.
fn skip<R: BufRead>(path: &Path, src: &mut Budgeted<R>, tag: Tag, len: u32) -> Result<()> {
    if src.skip(u64::from(len)) {
        return Ok(());
    }
    Err(DataError::decode(
        path,
        format!(
            "element {} declares {len} bytes but the data ends first",
            tag_name(tag)
        ),
    ))
}

/// The element's declared length, refused when it exceeds the `left` bytes.
fn declared(path: &Path, header: &dicom_core::DataElementHeader, left: u64) -> Result<u32> {
    let len = header.length().0;
    if u64::from(len) > left {
        return Err(DataError::decode(
            path,
            format!(
                "element {} declares a length of {len} bytes, more than the {left} bytes left in the file",
                tag_name(header.tag())
            ),
        ));
    }
    Ok(len)
}

/// `(7FE0,0010)`, DICOM's way of writing a tag.
fn tag_name(tag: Tag) -> String {
    format!("({:04X},{:04X})", tag.0, tag.1)
}
