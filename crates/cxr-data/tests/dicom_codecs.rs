//! Encapsulated DICOM pixel data: JPEG baseline (the SIIM format, encoded here
//! with dicom-pixeldata's transcoder) and RLE lossless.

use std::path::Path;

use cxr_data::decode::{Pixels, decode_bytes};
use dicom_core::value::PixelFragmentSequence;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use dicom_pixeldata::Transcode;
use dicom_transfer_syntax_registry::entries::JPEG_BASELINE;

const W: u16 = 64;
const H: u16 = 48;

fn gradient() -> Vec<u8> {
    (0..H as u32)
        .flat_map(|y| (0..W as u32).map(move |x| (x * 3 + y) as u8))
        .collect()
}

fn object(pixel_data: DataElement<InMemDicomObject>) -> InMemDicomObject {
    let mut obj = InMemDicomObject::from_element_iter([
        DataElement::new(
            tags::SOP_CLASS_UID,
            VR::UI,
            uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
        ),
        DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, "2.25.7"),
        DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16)),
        DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(H)),
        DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(W)),
        DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(8u16)),
        DataElement::new(tags::BITS_STORED, VR::US, PrimitiveValue::from(8u16)),
        DataElement::new(tags::HIGH_BIT, VR::US, PrimitiveValue::from(7u16)),
        DataElement::new(
            tags::PIXEL_REPRESENTATION,
            VR::US,
            PrimitiveValue::from(0u16),
        ),
    ]);
    obj.put(pixel_data);
    obj
}

fn values(bytes: &[u8]) -> Vec<f32> {
    let d = decode_bytes(Path::new("t.dcm"), bytes).unwrap();
    assert_eq!(
        (d.width, d.height, d.bits, d.inverted),
        (W as u32, H as u32, 8, false)
    );
    match d.pixels {
        Pixels::F32(v) => v,
        _ => panic!("DICOM decodes to modality values"),
    }
}

#[test]
fn jpeg_baseline_encapsulated() {
    let px = gradient();
    let obj = object(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::from(px.clone()),
    ));
    let mut file = obj
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
        .unwrap();
    file.transcode(&JPEG_BASELINE.erased()).unwrap();
    assert_eq!(
        file.meta().transfer_syntax().trim_end_matches('\0'),
        uids::JPEG_BASELINE8_BIT
    );
    let mut bytes = Vec::new();
    file.write_all(&mut bytes).unwrap();
    let v = values(&bytes);
    let mae: f32 = v
        .iter()
        .zip(&px)
        .map(|(a, &b)| (a - b as f32).abs())
        .sum::<f32>()
        / v.len() as f32;
    assert!(mae < 3.0, "JPEG baseline MAE {mae}");
}

/// PackBits literal runs of at most 128 bytes, as DICOM RLE segments use.
fn packbits(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in data.chunks(128) {
        out.push((chunk.len() - 1) as u8);
        out.extend_from_slice(chunk);
    }
    if out.len() % 2 == 1 {
        out.push(0x80); // no-op byte keeps the fragment even
    }
    out
}

#[test]
fn rle_lossless_is_exact() {
    let px = gradient();
    let mut fragment = vec![0u8; 64];
    fragment[0..4].copy_from_slice(&1u32.to_le_bytes());
    fragment[4..8].copy_from_slice(&64u32.to_le_bytes());
    fragment.extend(packbits(&px));
    let seq = PixelFragmentSequence::new(Vec::<u32>::new(), vec![fragment]);
    let obj = object(DataElement::new(tags::PIXEL_DATA, VR::OB, seq));
    let file = obj
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::RLE_LOSSLESS))
        .unwrap();
    let mut bytes = Vec::new();
    file.write_all(&mut bytes).unwrap();
    let v = values(&bytes);
    assert_eq!(v, px.iter().map(|&b| b as f32).collect::<Vec<_>>());
}
