//! `cxrlearn convert` and `cxrlearn info` end to end on a generic CSV.

use std::process::Command;

fn cxrlearn(args: &[&str]) -> (bool, String, String) {
    let _turn = crate::common::one_process();
    let out = Command::new(env!("CARGO_BIN_EXE_cxrlearn"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `info --system`: the binary has libtorch's CUDA support loaded whenever
/// the libtorch it links has it (read from the process's own mappings), and
/// the text and JSON forms agree.
#[test]
fn info_system_reports_libtorch_and_cuda() {
    let (ok, json, err) = cxrlearn(&["info", "--system", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let dir = std::path::PathBuf::from(v["libtorch_dir"].as_str().expect("libtorch dir"));
    assert!(dir.join("libtorch_cpu.so").exists(), "{}", dir.display());
    let present = dir.join("libtorch_cuda.so").exists();
    assert_eq!(v["cuda_library_present"], present);
    assert_eq!(
        v["cuda_library_loaded"],
        present,
        "{}/libtorch_cuda.so exists: {present}, but loaded by the binary: {}",
        dir.display(),
        v["cuda_library_loaded"]
    );
    assert_eq!(v["cuda_support"], present);
    assert_eq!(v["cuda_version"].is_string(), present);
    let (ok, text, _) = cxrlearn(&["info", "--system"]);
    assert!(ok);
    let version = v["libtorch_version"].as_str().unwrap();
    assert!(
        text.contains(&format!("libtorch        {version}")),
        "{text}"
    );
    assert!(text.contains("cuda status"), "{text}");
    if present {
        assert!(text.contains("libtorch_cuda.so loaded"), "{text}");
    }
    // A store and --system exclude each other; one of them is needed.
    let (ok, _, err) = cxrlearn(&["info"]);
    assert!(!ok && err.contains("<STORE>"), "{err}");
}

#[test]
fn convert_info_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut csv = String::from("file,pid,a,b\n");
    std::fs::create_dir_all(d.join("img")).unwrap();
    for i in 0..8u32 {
        let name = format!("img/{i}.png");
        if i != 3 {
            let raw: Vec<u8> = vec![(i * 30) as u8; 20 * 10];
            write_gray_png(&d.join(&name), 20, 10, &raw);
        }
        csv += &format!(
            "{name},p{},{},{}\n",
            i / 2,
            i % 2,
            ["1", "0", "-1", ""][i as usize % 4]
        );
    }
    std::fs::write(d.join("labels.csv"), csv).unwrap();
    let store = d.join("store");
    let labels = d.join("labels.csv");
    let s = store.to_str().unwrap();
    let base = [
        "convert",
        "--quiet",
        "--csv",
        labels.to_str().unwrap(),
        "--image-root",
        d.to_str().unwrap(),
        "--path-column",
        "file",
        "--label-columns",
        "a,b",
        "--task",
        "multilabel",
        "--patient-column",
        "pid",
        "--size",
        "8",
        "--out",
        s,
    ];
    let (ok, out, err) = cxrlearn(&base);
    assert!(ok, "{err}");
    // --quiet drops the "wrote ..." summary (issue #22) but still points at
    // the unreadable image; the counts are checked through `info` and
    // skipped.csv instead.
    assert!(!out.contains("wrote"), "{out}");
    assert!(out.contains("unreadable images are listed in"), "{out}");
    let skipped = std::fs::read_to_string(store.join("skipped.csv")).unwrap();
    assert_eq!(skipped.trim_end().lines().count(), 2, "{skipped}");
    let (ok, out, _) = cxrlearn(&["info", s]);
    assert!(ok);
    assert!(out.contains("images     7 x [8, 8] u8"), "{out}");
    let (ok, _, err) = cxrlearn(&base);
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: ") && err.contains("--force"),
        "{err}"
    );
    let (ok, _, err) = cxrlearn(&["info", d.join("missing").to_str().unwrap()]);
    // The path itself is named, not a file inside it (issue #22).
    assert!(
        !ok && err.starts_with("error: ")
            && err.contains("missing: No such file")
            && !err.contains("dataset.json"),
        "{err}"
    );
    let (ok, _, err) = cxrlearn(&[
        "convert",
        "--preset",
        "nope",
        "--root",
        d.to_str().unwrap(),
        "--out",
        s,
    ]);
    assert!(!ok && err.contains("unknown preset"), "{err}");
}

/// Out-of-range `--splits`, `--few-shot` and `--size` are refused with one
/// `error:` line naming the flag and value, and nothing is written (#22:
/// `--size 20000` used to allocate until the process aborted).
#[test]
fn convert_refuses_bad_options_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("img")).unwrap();
    let mut csv = String::from("file,pid,a\n");
    for i in 0..6u32 {
        let name = format!("img/{i}.png");
        write_gray_png(&d.join(&name), 4, 4, &[(i * 40) as u8; 16]);
        csv += &format!("{name},p{i},{}\n", i % 2);
    }
    std::fs::write(d.join("labels.csv"), csv).unwrap();
    let labels = d.join("labels.csv");
    let out = d.join("out").join("store");
    let base = [
        "convert",
        "--quiet",
        "--csv",
        labels.to_str().unwrap(),
        "--image-root",
        d.to_str().unwrap(),
        "--path-column",
        "file",
        "--label-columns",
        "a",
        "--task",
        "binary",
        "--out",
        out.to_str().unwrap(),
    ];
    for (flag, value, says) in [
        ("--splits", "50,50,50", "sum to 100"),
        ("--splits", "6,2,2", "sum to 100"),
        ("--splits", "-20,60,60", "non-negative"),
        ("--splits", "0,0,0", "sum to 100"),
        ("--few-shot", "0", "at least 1"),
        ("--size", "20000", "4096 pixels (MAX_IMAGE_SIZE)"),
        ("--size", "0", "4096 pixels (MAX_IMAGE_SIZE)"),
    ] {
        // `--flag=value`: clap would take `-20,60,60` for an option.
        let arg = format!("{flag}={value}");
        let mut args = base.to_vec();
        args.push(&arg);
        let (ok, _, err) = cxrlearn(&args);
        assert!(!ok, "{flag} {value} was accepted");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!("error: {flag} {value}: ")) && err.contains(says),
            "{err}"
        );
        assert!(
            !d.join("out").exists(),
            "{flag} {value} wrote {}",
            out.display()
        );
    }
    let (ok, help, _) = cxrlearn(&["convert", "--help"]);
    assert!(ok && help.contains("1 to 4096 pixels"), "{help}");
    // The boundaries are accepted.
    let mut args = base.to_vec();
    args.extend(["--splits", "100,0,0", "--few-shot", "1", "--size", "8"]);
    let (ok, _, err) = cxrlearn(&args);
    assert!(ok, "{err}");
}

/// A minimal 8-bit grayscale PNG writer (stored deflate blocks), so the test
/// needs no image crate.
fn write_gray_png(path: &std::path::Path, w: u32, h: u32, px: &[u8]) {
    fn crc(data: &[u8]) -> u32 {
        let mut c = 0xFFFF_FFFFu32;
        for &b in data {
            c ^= b as u32;
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
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend(data);
        out.extend(&body);
        out.extend(crc(&body).to_be_bytes());
    }
    let mut raw = Vec::new();
    for row in px.chunks(w as usize) {
        raw.push(0);
        raw.extend(row);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    let mut z = vec![0x78, 0x01, 1];
    z.extend((raw.len() as u16).to_le_bytes());
    z.extend((!(raw.len() as u16)).to_le_bytes());
    z.extend(&raw);
    z.extend(((b << 16) | a).to_be_bytes());
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &z);
    chunk(&mut png, b"IEND", &[]);
    std::fs::write(path, png).unwrap();
}
