//! The image size a compressed pixel-data fragment declares in its own
//! header: JPEG and JPEG-LS frame headers (SOFn, SOF55), the JPEG 2000 SIZ
//! marker segment.
//!
//! The codecs under `dicom-pixeldata` size their output from these headers,
//! not from the DICOM rows and columns: CharLS (through the `charls` crate)
//! allocates width x height x components x bytes zero-filled before it
//! decodes a byte, so a few hundred bytes of JPEG-LS can declare 65,535 x
//! 65,535 pixels inside a 10 x 10 DICOM image. Reading the header here lets
//! the decoder compare it with what the DICOM attributes (already bounded by
//! the pixel limit) admit, without decoding anything.

/// Width, height and components as a codestream's header declares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Declared {
    /// Which header declared it, for the error message.
    pub codec: &'static str,
    pub width: u64,
    pub height: u64,
    pub components: u64,
}

impl Declared {
    pub fn pixels(&self) -> u64 {
        self.width
            .saturating_mul(self.height)
            .saturating_mul(self.components)
    }
}

/// The size `fragment` declares when it starts a JPEG, JPEG-LS or JPEG 2000
/// codestream (or a JP2 file) whose header can be read; `None` otherwise
/// (a continuation fragment, or a header the codec itself will refuse).
pub(super) fn declared(fragment: &[u8]) -> Option<Declared> {
    if fragment.starts_with(&[0xFF, 0xD8]) {
        return jpeg_frame(fragment);
    }
    if fragment.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]) {
        return j2k_siz(&fragment[2..]);
    }
    // A JP2 file (signature box first): the codestream is inside its jp2c
    // box; its SIZ is the first SOC + SIZ pair.
    if fragment.starts_with(&[0, 0, 0, 0x0C, 0x6A, 0x50, 0x20, 0x20]) {
        let at = fragment
            .windows(4)
            .position(|w| w == [0xFF, 0x4F, 0xFF, 0x51])?;
        return j2k_siz(&fragment[at + 2..]);
    }
    None
}

/// Big-endian integer of `n` bytes at `at`.
fn be(data: &[u8], at: usize, n: usize) -> Option<u64> {
    let bytes = data.get(at..at.checked_add(n)?)?;
    Some(bytes.iter().fold(0, |v, &b| (v << 8) | u64::from(b)))
}

/// The first frame header of a JPEG or JPEG-LS stream: marker segments are
/// skipped by their lengths from SOI up to the first SOFn (0xC0..=0xCF but
/// DHT, JPG and DAC) or SOF55 (0xF7, JPEG-LS); a scan before any frame
/// header ends the search.
fn jpeg_frame(data: &[u8]) -> Option<Declared> {
    let mut at = 2;
    loop {
        if *data.get(at)? != 0xFF {
            return None;
        }
        // Fill bytes (0xFF) may precede a marker.
        while *data.get(at + 1)? == 0xFF {
            at += 1;
        }
        let marker = *data.get(at + 1)?;
        at += 2;
        match marker {
            // Markers without a segment: TEM, RSTn.
            0x01 | 0xD0..=0xD7 => continue,
            0xD9 | 0xDA => return None,
            0xC0..=0xCF | 0xF7 if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                // Lf(2) P(1) Y(2) X(2) Nf(1)
                return Some(Declared {
                    codec: if marker == 0xF7 { "JPEG-LS" } else { "JPEG" },
                    height: be(data, at + 3, 2)?,
                    width: be(data, at + 5, 2)?,
                    components: be(data, at + 7, 1)?,
                });
            }
            _ => at = at.checked_add(usize::try_from(be(data, at, 2)?).ok()?)?,
        }
    }
}

/// Every JPEG or JPEG-LS frame header (SOFn, SOF55) anywhere in `data`, with
/// its sample precision in bits, in order. `dicom-transfer-syntax-registry`
/// concatenates a file's fragments and lets its JPEG decoder look for the
/// next SOI wherever the previous frame ended, so a frame need not start a
/// fragment; each decoded frame is copied into the image's buffer without
/// a bounds check (a 256 x 8960 x 3 frame in a 256 x 256 x 3 image panicked
/// there: fuzz/regressions/dicom/). Entropy-coded data cannot hold such a
/// marker (a 0xFF there is followed by 0x00 or a restart marker), so a
/// match is a frame header, or bytes a decoder could take for one.
pub(super) fn jpeg_frames_anywhere(data: &[u8]) -> impl Iterator<Item = (Declared, u64)> + '_ {
    data.windows(2).enumerate().filter_map(move |(at, w)| {
        let marker = w[1];
        let is_frame = w[0] == 0xFF
            && (matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
                || marker == 0xF7);
        if !is_frame {
            return None;
        }
        let at = at + 2;
        Some((
            Declared {
                codec: if marker == 0xF7 { "JPEG-LS" } else { "JPEG" },
                height: be(data, at + 3, 2)?,
                width: be(data, at + 5, 2)?,
                components: be(data, at + 7, 1)?,
            },
            be(data, at + 2, 1)?,
        ))
    })
}

/// The SIZ segment (`data` from its marker): Lsiz(2) Rsiz(2) Xsiz(4)
/// Ysiz(4) XOsiz(4) YOsiz(4) XTsiz(4) YTsiz(4) XTOsiz(4) YTOsiz(4)
/// Csiz(2). The image is the reference grid less its offset.
fn j2k_siz(data: &[u8]) -> Option<Declared> {
    let field = |at: usize| be(data, at, 4);
    Some(Declared {
        codec: "JPEG 2000",
        width: field(6)?.saturating_sub(field(14)?),
        height: field(10)?.saturating_sub(field(18)?),
        components: be(data, 38, 2)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_jpeg_ls_jpeg_and_j2k_headers() {
        // SOI, APP8 (4 bytes), SOF55: 8 bits, 300 rows, 200 columns, 1 component.
        let ls = [
            0xFF, 0xD8, 0xFF, 0xE8, 0, 4, 1, 2, 0xFF, 0xF7, 0, 11, 8, 1, 44, 0, 200, 1, 1, 17, 0,
        ];
        let d = declared(&ls).unwrap();
        assert_eq!(
            (d.codec, d.width, d.height, d.components),
            ("JPEG-LS", 200, 300, 1)
        );
        let jpeg = [0xFF, 0xD8, 0xFF, 0xC1, 0, 11, 12, 0, 5, 0, 7, 3];
        let d = declared(&jpeg).unwrap();
        assert_eq!(
            (d.codec, d.width, d.height, d.components),
            ("JPEG", 7, 5, 3)
        );
        let mut j2k = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
        for v in [110u32, 60, 10, 0, 64, 64, 0, 0] {
            j2k.extend(v.to_be_bytes());
        }
        j2k.extend([0, 1]);
        let d = declared(&j2k).unwrap();
        assert_eq!(
            (d.width, d.height, d.components, d.pixels()),
            (100, 60, 1, 6000)
        );
        // Anywhere: a second frame after the first, with its precision.
        let mut two = jpeg.to_vec();
        two.extend([0xAB, 0xFF, 0xC0, 0, 11, 8, 1, 0, 2, 0, 1]);
        let found: Vec<_> = jpeg_frames_anywhere(&two)
            .map(|(d, p)| (d.width, d.height, d.components, p))
            .collect();
        assert_eq!(found, [(7, 5, 3, 12), (512, 256, 1, 8)]);
        // Truncated or scan-first streams declare nothing.
        assert_eq!(declared(&jpeg[..8]), None);
        assert_eq!(declared(&[0xFF, 0xD8, 0xFF, 0xDA, 0, 2]), None);
        assert_eq!(declared(&[1, 0, 0, 0]), None);
    }
}
