//! Decoding every format, synthetic files and the real RG1 chest CR DICOM.

use crate::common;

use std::path::Path;

use cxr_data::decode::{DecodedImage, Intensity, Pixels, decode_bytes, decode_file};
use cxr_data::preprocess::{ResizePolicy, to_store_image, to_u8};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

#[test]
fn png_8_and_16_bit_and_jpeg() {
    let dir = tempfile::tempdir().unwrap();
    let p8 = dir.path().join("a.png");
    common::write_png(&p8, 8, 4, 10);
    let d = decode_file(&p8).unwrap();
    assert_eq!((d.width, d.height, d.bits), (8, 4, 8));
    assert_eq!(d.intensity, Intensity::Direct);
    let Pixels::U8(v) = &d.pixels else {
        panic!("u8 expected")
    };
    assert_eq!(&v[..4], &[10, 41, 73, 105]);

    let p16 = dir.path().join("b.png");
    let img = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(4, 2, |x, y| {
        image::Luma([1000 + 1000 * x as u16 + y as u16])
    });
    img.save(&p16).unwrap();
    let d = decode_file(&p16).unwrap();
    assert_eq!(d.bits, 16);
    assert_eq!(
        d.pixels,
        Pixels::U16(vec![1000, 2000, 3000, 4000, 1001, 2001, 3001, 4001])
    );
    // Per-image min-max: 1000 -> 0, 4001 -> 255.
    let u = to_u8(d);
    assert_eq!((u[0], u[3], u[7]), (0, 255, 255));

    let prgb = dir.path().join("c.png");
    image::RgbImage::from_pixel(3, 3, image::Rgb([100, 100, 100]))
        .save(&prgb)
        .unwrap();
    assert_eq!(decode_file(&prgb).unwrap().pixels, Pixels::U8(vec![100; 9]));

    let pj = dir.path().join("d.jpg");
    image::GrayImage::from_pixel(16, 16, image::Luma([128]))
        .save(&pj)
        .unwrap();
    let d = decode_file(&pj).unwrap();
    assert_eq!((d.width, d.height, d.bits), (16, 16, 8));
    let Pixels::U8(v) = d.pixels else { panic!() };
    assert!(v.iter().all(|&x| (126..=130).contains(&x)));
}

#[test]
fn bad_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("trunc.png");
    common::write_png(&p, 32, 32, 0);
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = decode_file(&p).unwrap_err().to_string();
    assert!(
        e.contains("trunc.png") && e.contains("cannot decode"),
        "{e}"
    );
    let e = decode_file(&dir.path().join("missing.png"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.png"), "{e}");
    let e = decode_bytes(Path::new("x.txt"), b"hello")
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown image format"), "{e}");
}

#[test]
fn jsrt_raw_big_endian_12_bit_inverted() {
    let mut bytes = vec![0u8; 2048 * 2048 * 2];
    // Pixel (0,0) = 4095 (dense film = air), pixel (0,1) = 0.
    bytes[0] = 0x0F;
    bytes[1] = 0xFF;
    let d = decode_bytes(Path::new("JPCLN001.IMG"), &bytes).unwrap();
    assert_eq!(
        (d.width, d.height, d.bits, d.inverted),
        (2048, 2048, 12, true)
    );
    let Pixels::U16(v) = &d.pixels else { panic!() };
    assert_eq!((v[0], v[1]), (4095, 0));
    let u = to_u8(d);
    assert_eq!((u[0], u[1]), (0, 255));
    let e = decode_bytes(Path::new("JPCLN002.IMG"), &bytes[..100])
        .unwrap_err()
        .to_string();
    assert!(e.contains("8388608"), "{e}");
}

fn dicom(photometric: &str, frames: u32, ts: &str, window: Option<(f64, f64)>) -> Vec<u8> {
    let (w, h) = (4u16, 2u16);
    let n = (w as usize) * (h as usize) * frames as usize;
    let pixels: Vec<u16> = (0..n as u16).map(|i| 100 * i).collect();
    let mut obj = InMemDicomObject::from_element_iter([
        DataElement::new(
            tags::SOP_CLASS_UID,
            VR::UI,
            uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE,
        ),
        DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, "2.25.1"),
        DataElement::new(tags::MODALITY, VR::CS, "CR"),
        DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16)),
        DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, photometric),
        DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(h)),
        DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(w)),
        DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16)),
        DataElement::new(tags::BITS_STORED, VR::US, PrimitiveValue::from(12u16)),
        DataElement::new(tags::HIGH_BIT, VR::US, PrimitiveValue::from(11u16)),
        DataElement::new(
            tags::PIXEL_REPRESENTATION,
            VR::US,
            PrimitiveValue::from(0u16),
        ),
        DataElement::new(tags::RESCALE_SLOPE, VR::DS, "2"),
        DataElement::new(tags::RESCALE_INTERCEPT, VR::DS, "-100"),
        DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(pixels.into())),
    ]);
    if frames > 1 {
        obj.put(DataElement::new(
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            frames.to_string(),
        ));
    }
    if let Some((c, w)) = window {
        obj.put(DataElement::new(tags::WINDOW_CENTER, VR::DS, c.to_string()));
        obj.put(DataElement::new(tags::WINDOW_WIDTH, VR::DS, w.to_string()));
    }
    let file = obj
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(ts))
        .unwrap();
    let mut out = Vec::new();
    file.write_all(&mut out).unwrap();
    out
}

#[test]
fn dicom_rescale_window_monochrome1_and_refusals() {
    let p = Path::new("x.dcm");
    // Stored 0,100..700 -> rescaled -100,100,...,1300.
    let d = decode_bytes(
        p,
        &dicom("MONOCHROME2", 1, uids::EXPLICIT_VR_LITTLE_ENDIAN, None),
    )
    .unwrap();
    assert_eq!((d.width, d.height, d.bits, d.inverted), (4, 2, 12, false));
    let Pixels::F32(v) = &d.pixels else { panic!() };
    assert_eq!(v[..3], [-100.0, 100.0, 300.0]);
    assert_eq!(d.intensity, Intensity::MinMax);
    assert_eq!(to_u8(d), vec![0, 36, 73, 109, 146, 182, 219, 255]);

    let d = decode_bytes(
        p,
        &dicom(
            "MONOCHROME1",
            1,
            uids::IMPLICIT_VR_LITTLE_ENDIAN,
            Some((300.0, 401.0)),
        ),
    )
    .unwrap();
    assert!(d.inverted);
    assert!(matches!(d.intensity, Intensity::Window { .. }));
    // Window 300 +- 200 over -100..1300, then inverted.
    assert_eq!(to_u8(d), vec![255, 255, 127, 0, 0, 0, 0, 0]);

    let e = decode_bytes(
        p,
        &dicom("MONOCHROME2", 3, uids::EXPLICIT_VR_LITTLE_ENDIAN, None),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("multi-frame") && e.contains("3 frames"), "{e}");
    // An unknown transfer syntax: patch the (same-length) UID in the file meta group.
    let mut bytes = dicom("MONOCHROME2", 1, uids::EXPLICIT_VR_LITTLE_ENDIAN, None);
    let at = bytes
        .windows(19)
        .position(|w| w == b"1.2.840.10008.1.2.1")
        .unwrap();
    bytes[at..at + 19].copy_from_slice(b"1.2.840.10008.1.2.9");
    let e = decode_bytes(p, &bytes).unwrap_err().to_string();
    assert!(
        e.contains("x.dcm") && e.contains("1.2.840.10008.1.2.9"),
        "{e}"
    );
}

fn mean(v: &[u8], w: usize, x0: usize, x1: usize, y0: usize, y1: usize) -> f64 {
    let mut s = 0.0;
    for y in y0..y1 {
        for x in x0..x1 {
            s += v[y * w + x] as f64;
        }
    }
    s / ((x1 - x0) * (y1 - y0)) as f64
}

fn samples(d: &DecodedImage) -> Vec<f32> {
    match &d.pixels {
        Pixels::F32(v) => v.clone(),
        _ => panic!("DICOM decodes to modality values"),
    }
}

#[test]
fn real_rg1_three_transfer_syntaxes() {
    let (Some(unc), Some(j2kr), Some(j2ki)) = (
        common::real_data("RG1_UNCR.dcm"),
        common::real_data("RG1_J2KR.dcm"),
        common::real_data("RG1_J2KI.dcm"),
    ) else {
        return;
    };
    let a = decode_file(&unc).unwrap();
    let b = decode_file(&j2kr).unwrap();
    let c = decode_file(&j2ki).unwrap();
    assert_eq!((a.width, a.height), (b.width, b.height));
    assert_eq!((a.width, a.height), (c.width, c.height));
    let (sa, sb, sc) = (samples(&a), samples(&b), samples(&c));
    // Lossless JPEG 2000: identical samples.
    assert_eq!(sa, sb);
    // Lossy JPEG 2000: close on average.
    let mae: f64 = sa
        .iter()
        .zip(&sc)
        .map(|(x, y)| (x - y).abs() as f64)
        .sum::<f64>()
        / sa.len() as f64;
    let range =
        sa.iter().cloned().fold(f32::MIN, f32::max) - sa.iter().cloned().fold(f32::MAX, f32::min);
    eprintln!(
        "RG1 {}x{} bits {} inverted {} intensity {:?}; lossy MAE {mae:.2} over range {range}",
        a.width, a.height, a.bits, a.inverted, a.intensity
    );
    assert!(mae < 0.01 * range as f64, "lossy MAE {mae} too large");
    let img = to_store_image(a, 224, ResizePolicy::Squash);
    let img_b = to_store_image(b, 224, ResizePolicy::Squash);
    assert_eq!(img, img_b);
    // Looks like a chest: the lungs (left/right middle thirds) are darker than the mediastinum.
    let lungs = (mean(&img, 224, 40, 80, 70, 150) + mean(&img, 224, 144, 184, 70, 150)) / 2.0;
    let mediastinum = mean(&img, 224, 100, 124, 70, 150);
    eprintln!("lungs {lungs:.1} mediastinum {mediastinum:.1}");
    assert!(
        mediastinum > lungs + 20.0,
        "lungs {lungs} mediastinum {mediastinum}"
    );
}

/// JPEG-LS through CharLS, on pydicom's own test files: the lossless file
/// decodes to exactly the samples of its uncompressed twin (`MR_small`), and
/// a 16-bit near-lossless file decodes to a plausible image.
#[test]
fn real_jpeg_ls_lossless_and_near_lossless() {
    let (Some(unc), Some(jls), Some(near)) = (
        common::real_data("MR_small.dcm"),
        common::real_data("MR_small_jpeg_ls_lossless.dcm"),
        common::real_data("JPEGLSNearLossless_16.dcm"),
    ) else {
        return;
    };
    let a = decode_file(&unc).unwrap();
    let b = decode_file(&jls).unwrap();
    assert_eq!((a.width, a.height, a.bits), (b.width, b.height, b.bits));
    assert_eq!((a.width, a.height), (64, 64));
    assert_eq!(samples(&a), samples(&b));
    assert_eq!(
        to_store_image(a, 32, ResizePolicy::Squash),
        to_store_image(b, 32, ResizePolicy::Squash)
    );
    let n = decode_file(&near).unwrap();
    let s = samples(&n);
    assert_eq!(s.len(), n.width as usize * n.height as usize);
    let (lo, hi) = s
        .iter()
        .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    assert!(s.iter().all(|v| v.is_finite()) && hi > lo, "{lo}..{hi}");
}
