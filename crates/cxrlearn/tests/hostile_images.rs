//! Hostile image files (issue "Hostile inputs", defects 3 and 8, and
//! decompression bombs): `predict` refuses each with one `error:` line
//! naming the file, `convert` skips each with its labels and lists it, both
//! within the memory and time bounds of `common::refused_within_limits`.
//! Every file is built here, a few KB at most, declaring far more than it
//! holds, except two fuzz findings read from `fuzz/regressions/dicom/`.

use std::path::{Path, PathBuf};

use crate::common::{HOSTILE_MEMORY, HOSTILE_TIME, refused_within_limits, run, run_limited};

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";
const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// One explicit-VR element, little or big endian: VRs with a 4-byte length
/// take two reserved bytes first (PS3.5 7.1.2). `len` is what the header
/// declares, whatever `value` holds.
fn element(big: bool, tag: (u16, u16), vr: &str, len: u32, value: &[u8]) -> Vec<u8> {
    let u16b = |v: u16| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut out = [u16b(tag.0), u16b(tag.1)].concat();
    out.extend(vr.as_bytes());
    if ["OB", "OW", "SQ", "UN", "UT"].contains(&vr) {
        out.extend([0, 0]);
        out.extend(if big {
            len.to_be_bytes()
        } else {
            len.to_le_bytes()
        });
    } else {
        out.extend(u16b(len as u16));
    }
    out.extend(value);
    out
}

/// A text or UID value padded to even length, as a whole element.
fn text(big: bool, tag: (u16, u16), vr: &str, s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    if v.len() % 2 == 1 {
        v.push(if vr == "UI" { 0 } else { b' ' });
    }
    element(big, tag, vr, v.len() as u32, &v)
}

fn us(big: bool, tag: (u16, u16), v: u16) -> Vec<u8> {
    let b = if big {
        v.to_be_bytes()
    } else {
        v.to_le_bytes()
    };
    element(big, tag, "US", 2, &b)
}

/// A Part 10 file: preamble, `DICM`, the file meta group (always explicit
/// VR little endian) naming `ts`, then `data_set` as given.
fn dicom_file(ts: &str, data_set: &[u8]) -> Vec<u8> {
    let meta = [
        element(false, (0x0002, 0x0001), "OB", 2, &[0, 1]),
        text(false, (0x0002, 0x0002), "UI", "1.2.840.10008.5.1.4.1.1.1"),
        text(false, (0x0002, 0x0003), "UI", "2.25.1"),
        text(false, (0x0002, 0x0010), "UI", ts),
        text(false, (0x0002, 0x0012), "UI", "2.25.2"),
    ]
    .concat();
    let mut out = vec![0u8; 128];
    out.extend(b"DICM");
    out.extend(element(
        false,
        (0x0002, 0x0000),
        "UL",
        4,
        &(meta.len() as u32).to_le_bytes(),
    ));
    out.extend(meta);
    out.extend(data_set);
    out
}

/// The image attributes of a 16-bit grayscale image of `rows` x `columns`.
fn image_attributes(big: bool, rows: u16, columns: u16) -> Vec<u8> {
    [
        us(big, (0x0028, 0x0002), 1),
        text(big, (0x0028, 0x0004), "CS", "MONOCHROME2"),
        us(big, (0x0028, 0x0010), rows),
        us(big, (0x0028, 0x0011), columns),
        us(big, (0x0028, 0x0100), 16),
        us(big, (0x0028, 0x0101), 16),
        us(big, (0x0028, 0x0102), 15),
        us(big, (0x0028, 0x0103), 0),
    ]
    .concat()
}

/// Defect 3: 9 KB whose pixel data declares 4 GiB - 16 bytes.
fn dicom_4gib_pixel_data() -> Vec<u8> {
    let mut set = image_attributes(false, 64, 64);
    set.extend(element(
        false,
        (0x7FE0, 0x0010),
        "OW",
        0xFFFF_FFF0,
        &[0; 8192],
    ));
    dicom_file(EXPLICIT_LE, &set)
}

/// Defect 3: explicit VR big endian, a text element (before the pixel
/// data) declaring 2 GiB.
fn dicom_big_endian_huge_length() -> Vec<u8> {
    let mut set = text(true, (0x0008, 0x0060), "CS", "CR");
    set.extend(element(
        true,
        (0x0008, 0x2111),
        "UT",
        0x8000_0000,
        &[b' '; 64],
    ));
    set.extend(image_attributes(true, 64, 64));
    set.extend(element(true, (0x7FE0, 0x0010), "OW", 8192, &[0; 8192]));
    dicom_file(EXPLICIT_BE, &set)
}

/// 60000 x 60000 pixels declared, RLE-compressed into one tiny fragment:
/// the decoder sizes its output (7.2 GB) from the dimensions.
fn dicom_too_many_pixels() -> Vec<u8> {
    let mut set = image_attributes(false, 60000, 60000);
    set.extend(element(false, (0x7FE0, 0x0010), "OB", 0xFFFF_FFFF, &[]));
    // Empty offset table, one fragment (an RLE header naming 2 segments
    // and a few bytes), sequence delimiter.
    set.extend([0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
    let mut fragment = vec![0u8; 64];
    fragment[0] = 2;
    fragment[4..8].copy_from_slice(&64u32.to_le_bytes());
    fragment[8..12].copy_from_slice(&66u32.to_le_bytes());
    fragment.extend([0x81, 0, 0x81, 0]);
    let mut item = vec![0xFE, 0xFF, 0x00, 0xE0];
    item.extend((fragment.len() as u32).to_le_bytes());
    item.extend(fragment);
    set.extend(item);
    set.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    dicom_file(RLE_LOSSLESS, &set)
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A PNG declaring 100000 x 100000 8-bit gray pixels (10 GB) in a few
/// dozen bytes.
fn png_bomb() -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        png.extend((data.len() as u32).to_be_bytes());
        let body = [kind, data].concat();
        png.extend(&body);
        png.extend(crc32(&body).to_be_bytes());
    };
    let ihdr = [
        &100_000u32.to_be_bytes()[..],
        &100_000u32.to_be_bytes(),
        &[8, 0, 0, 0, 0],
    ]
    .concat();
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x01, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
    png
}

/// A 128 x 128 textured image as PNG or JPEG: texture, so that most of
/// the file is compressed pixels and a cut lands in them.
fn gradient(format: image::ImageFormat) -> Vec<u8> {
    let img = image::GrayImage::from_fn(128, 128, |x, y| {
        image::Luma([((x * 7 + y * 13) ^ (x * y)) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// A file cut at 60%: its lower rows missing.
fn truncated(bytes: Vec<u8>) -> Vec<u8> {
    bytes[..bytes.len() * 6 / 10].to_vec()
}

/// A committed `dicom` fuzz input: these two hide an element of another
/// group in the file meta group, then declare a data-set element of 3.4
/// and 4.2 GB (docs/fuzzing.md).
fn fuzz_finding(name: &str) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/dicom");
    std::fs::read(dir.join(name)).unwrap()
}

/// Every hostile case: file name, bytes, and what the error says.
fn cases() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    vec![
        (
            "jpeg_ls_1_7s_3_4gb.dcm",
            fuzz_finding("jpeg_ls_1_7s_3_4gb.dcm"),
            "element (3832,3532) declares a length of 3452422450 bytes",
        ),
        (
            "implicit_le_344b_4_2gb.dcm",
            fuzz_finding("implicit_le_344b_4_2gb.dcm"),
            "element (0100,0100) declares a length of 4294967040 bytes",
        ),
        (
            "pixel-data-4gib.dcm",
            dicom_4gib_pixel_data(),
            "element (7FE0,0010) declares a length of 4294967280 bytes",
        ),
        (
            "big-endian.dcm",
            dicom_big_endian_huge_length(),
            "element (0008,2111) declares a length of 2147483648 bytes",
        ),
        (
            "too-many-pixels.dcm",
            dicom_too_many_pixels(),
            "60000 rows x 60000 columns x 1 frames x 1 samples = 3600000000 pixels, more than the limit of 134217728 (--max-pixels)",
        ),
        (
            "bomb.png",
            png_bomb(),
            "100000 x 100000 = 10000000000 pixels, more than the limit",
        ),
        (
            "truncated.jpg",
            truncated(gradient(image::ImageFormat::Jpeg)),
            "truncated JPEG",
        ),
        (
            "truncated.png",
            truncated(gradient(image::ImageFormat::Png)),
            "cannot decode image",
        ),
    ]
}

/// A finetune run's sidecar without weights: `predict` decodes every image
/// before it loads the weights, so a refused image is all it reaches.
fn model_dir(dir: &Path) -> PathBuf {
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    let sidecar = serde_json::json!({
        "architecture": "resnet18-w16",
        "input_size": 32,
        "labels": ["a"],
        "task": "binary",
        "store_preprocessing": {
            "resize": "squash",
            "interpolation": "",
            "windowing": "",
            "inversion": ""
        },
        "store_image_size": [32, 32]
    });
    std::fs::write(model.join("model.json"), sidecar.to_string()).unwrap();
    model
}

#[test]
fn predict_refuses_each_hostile_image_within_limits() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_dir(dir.path());
    let out = dir.path().join("scores.csv");
    for (name, bytes, says) in cases() {
        let file = dir.path().join(name);
        std::fs::write(&file, bytes).unwrap();
        let args = [
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--device",
            "cpu",
            file.to_str().unwrap(),
        ];
        let err = refused_within_limits(&args, says);
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: {err}");
        assert!(err.contains(file.to_str().unwrap()), "{name}: {err}");
        assert!(!out.exists(), "{name}");
    }
}

#[test]
fn convert_skips_each_hostile_image_within_limits() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut csv = String::from("file,a\n");
    for i in 0..6 {
        let name = format!("good{i}.png");
        std::fs::write(d.join(&name), gradient(image::ImageFormat::Png)).unwrap();
        csv += &format!("{name},{}\n", i % 2);
    }
    let hostile = cases();
    for (name, bytes, _) in &hostile {
        std::fs::write(d.join(name), bytes).unwrap();
        csv += &format!("{name},1\n");
    }
    std::fs::write(d.join("labels.csv"), csv).unwrap();
    let store = d.join("store");
    let args = [
        "convert",
        "--quiet",
        "--csv",
        d.join("labels.csv").to_str().unwrap(),
        "--image-root",
        d.to_str().unwrap(),
        "--path-column",
        "file",
        "--label-columns",
        "a",
        "--task",
        "binary",
        "--size",
        "16",
        "--out",
        store.to_str().unwrap(),
    ]
    .map(str::to_owned);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (out, took) = run_limited(&args, HOSTILE_MEMORY);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(took < HOSTILE_TIME, "took {took:?}: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("unreadable images are listed in"),
        "{stdout}"
    );

    let skipped = std::fs::read_to_string(store.join("skipped.csv")).unwrap();
    assert_eq!(
        skipped.trim_end().lines().count(),
        1 + hostile.len(),
        "{skipped}"
    );
    for (name, _, says) in &hostile {
        let line = skipped
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} not listed: {skipped}"));
        assert!(line.contains(says), "{line}");
    }
    let manifest = std::fs::read_to_string(store.join("manifest.csv")).unwrap();
    assert_eq!(manifest.trim_end().lines().count(), 1 + 6, "{manifest}");
    for (name, _, _) in &hostile {
        assert!(!manifest.contains(name), "{manifest}");
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("dataset.json")).unwrap()).unwrap();
    assert_eq!(meta["skipped"], hostile.len(), "{meta}");
}

/// `--max-pixels` moves the bound (a 128 x 128 image refused at 16383
/// pixels, admitted at 16384) and refuses 0 with one `error:` line, on both commands.
#[test]
fn max_pixels_flag_bounds_decoding_and_refuses_zero() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = model_dir(d);
    let png = d.join("small.png");
    std::fs::write(&png, gradient(image::ImageFormat::Png)).unwrap();
    let out = d.join("scores.csv");
    let predict = |max: &str| {
        run(&[
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--device",
            "cpu",
            "--max-pixels",
            max,
            png.to_str().unwrap(),
        ])
    };
    let err = String::from_utf8_lossy(&predict("16383").stderr).into_owned();
    assert!(
        err.starts_with("error: ")
            && err.contains("128 x 128 = 16384 pixels, more than the limit of 16383"),
        "{err}"
    );
    // At 16384 the image passes and predict goes on to the (absent) weights.
    let err = String::from_utf8_lossy(&predict("16384").stderr).into_owned();
    assert!(err.contains("model.safetensors"), "{err}");
    let err = String::from_utf8_lossy(&predict("0").stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: --max-pixels 0: must be at least 1"),
        "{err}"
    );

    std::fs::write(d.join("labels.csv"), "file,a\nsmall.png,1\n").unwrap();
    let store = d.join("store");
    let o = run(&[
        "convert",
        "--csv",
        d.join("labels.csv").to_str().unwrap(),
        "--image-root",
        d.to_str().unwrap(),
        "--path-column",
        "file",
        "--label-columns",
        "a",
        "--task",
        "binary",
        "--max-pixels",
        "0",
        "--out",
        store.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: --max-pixels 0: must be at least 1"),
        "{err}"
    );
    assert!(!store.exists());
    let o = run(&["convert", "--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(
        help.contains("--max-pixels") && help.contains("134217728"),
        "{help}"
    );
}
