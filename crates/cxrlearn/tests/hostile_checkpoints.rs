//! Hostile checkpoints through `cxrlearn info` and `cxrlearn import`: each
//! is built here as an attacker would write it and ends in one clear error
//! within the memory and time limits of [`refused_within_limits`].

use std::path::{Path, PathBuf};

use crate::common::{HOSTILE_MEMORY, HOSTILE_TIME, refused_within_limits, run_limited};

/// BINUNICODE.
fn s(x: &str) -> Vec<u8> {
    let mut v = vec![b'X'];
    v.extend((x.len() as u32).to_le_bytes());
    v.extend(x.as_bytes());
    v
}

/// `{'w': _rebuild_tensor_v2(('storage', FloatStorage, '0', 'cpu', 4), 0, size, stride)}`,
/// `size` and `stride` given as pickled tuples.
fn tensor_dict(size: &[u8], stride: &[u8]) -> Vec<u8> {
    let mut v = b"\x80\x02}".to_vec();
    v.extend(s("w"));
    v.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
    v.extend(s("storage"));
    v.extend(b"ctorch\nFloatStorage\n");
    v.extend(s("0"));
    v.extend(s("cpu"));
    v.extend(b"K\x04tQK\x00");
    v.extend(size);
    v.extend(stride);
    v.extend(b"tRs.");
    v
}

/// A `torch.save` zip: `pkl` as data.pkl, `storage` as storage '0' (stored
/// entries; the reader checks no CRC, so none is written).
fn torch_zip(pkl: &[u8], storage: &[u8]) -> Vec<u8> {
    let (mut out, mut central) = (Vec::new(), Vec::new());
    for (name, data) in [("archive/data.pkl", pkl), ("archive/data/0", storage)] {
        let offset = out.len() as u32;
        let (size, len) = ((data.len() as u32).to_le_bytes(), name.len() as u16);
        out.extend(0x0403_4b50u32.to_le_bytes());
        out.extend([20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend(size);
        out.extend(size);
        out.extend(len.to_le_bytes());
        out.extend([0, 0]);
        out.extend(name.as_bytes());
        out.extend(data);
        central.extend(0x0201_4b50u32.to_le_bytes());
        central.extend([20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        central.extend(size);
        central.extend(size);
        central.extend(len.to_le_bytes());
        central.extend([0; 12]);
        central.extend(offset.to_le_bytes());
        central.extend(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend(&central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0, 0, 0, 0, 2, 0, 2, 0]);
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend([0, 0]);
    out
}

/// The legacy (pre-1.6) format: magic, protocol and system-info pickles,
/// the object pickle `pkl`, then an empty storage key list.
fn legacy(pkl: &[u8]) -> Vec<u8> {
    let mut v = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.".to_vec();
    v.extend(b"\x80\x02M\xe9\x03.\x80\x02}.");
    v.extend(pkl);
    v.extend(b"\x80\x02].");
    v
}

/// `n` lists each inside the one before, every level in a MARK and APPENDS.
fn nested_in_marks(n: usize) -> Vec<u8> {
    let mut v = b"\x80\x02]".to_vec();
    for _ in 1..n {
        v.extend(b"(]");
    }
    v.extend(std::iter::repeat_n(b'e', n - 1));
    v.push(b'.');
    v
}

/// `n` nested lists as `pickle` writes one-item lists: every list pushed,
/// then one APPEND per level.
fn nested_on_stack(n: usize) -> Vec<u8> {
    let mut v = b"\x80\x02".to_vec();
    v.extend(std::iter::repeat_n(b']', n));
    v.extend(std::iter::repeat_n(b'a', n - 1));
    v.push(b'.');
    v
}

/// `n` nested lists made through the memo (neither stack nor MARKs grow).
fn nested_through_memo(n: u32) -> Vec<u8> {
    let mut v = b"\x80\x04]\x94".to_vec();
    for i in 0..n {
        v.push(b'j');
        v.extend(i.to_le_bytes());
        v.extend(b"]\x94a0");
    }
    v.extend(b"j\x00\x00\x00\x00.");
    v
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// `info FILE` and `import --model medaug --checkpoint FILE` both refuse
/// `file` with `message`.
fn refused(dir: &Path, file: &Path, message: &str) {
    let f = file.to_str().unwrap();
    refused_within_limits(&["info", f], message);
    let out = dir.join("imported.safetensors");
    refused_within_limits(
        &[
            "import",
            "--model",
            "medaug",
            "--checkpoint",
            f,
            "--out",
            out.to_str().unwrap(),
        ],
        message,
    );
    assert!(!out.exists());
}

#[test]
fn three_million_nested_lists_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let marks = nested_in_marks(3_000_000);
    let stack = nested_on_stack(3_000_000);
    refused(d, &write(d, "marks.pth", &legacy(&marks)), "MAX_NESTING");
    refused(
        d,
        &write(d, "marks.pt", &torch_zip(&marks, b"")),
        "MAX_NESTING",
    );
    refused(d, &write(d, "stack.pth", &legacy(&stack)), "MAX_STACK");
    refused(
        d,
        &write(d, "stack.pt", &torch_zip(&stack, b"")),
        "MAX_STACK",
    );
    // Under every count limit: all 800k levels are built, and the walk to
    // the tensors stops at its depth limit (it took 50 s on a path copied
    // per level).
    let memo = nested_through_memo(800_000);
    refused(d, &write(d, "memo.pt", &torch_zip(&memo, b"")), "MAX_DEPTH");
}

#[test]
fn a_huge_declared_length_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut p = b"\x80\x04\x8e".to_vec(); // BINBYTES8
    p.extend((1u64 << 62).to_le_bytes());
    let f = write(d, "bytes.pt", &torch_zip(&p, b""));
    refused(d, &f, "4611686018427387904 bytes declared, 0 left");
}

#[test]
fn a_memoised_string_repeated_costs_nothing_per_copy() {
    // One 1 MiB string fetched from the memo 4000 times into a list: 4 GiB
    // if each fetch copied it.
    let dir = tempfile::tempdir().unwrap();
    let mut p = b"\x80\x02]".to_vec();
    p.extend(s(&"x".repeat(1 << 20)));
    p.extend(b"q\x000"); // memoised and popped
    for _ in 0..4000 {
        p.extend(b"h\x00a");
    }
    p.push(b'.');
    let f = write(dir.path(), "strings.pt", &torch_zip(&p, b""));
    let (out, took) = run_limited(&["info", f.to_str().unwrap()], HOSTILE_MEMORY);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(took < HOSTILE_TIME, "{took:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("tensors    0 (0 values)"));
}

#[test]
fn impossible_tensor_shapes_are_refused_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let storage = [0u8; 16];
    let two_40 = b"\x8a\x06\x00\x00\x00\x00\x00\x01"; // LONG1 2^40
    let cases: [(&str, Vec<u8>, &[u8], &str); 4] = [
        (
            "negative.pt",
            b"(J\xfd\xff\xff\xfft".to_vec(),
            b"(K\x01t",
            "negative size -3",
        ),
        // 2^40 elements over four, read through stride 0 so that the view
        // stays inside the storage while its copy would take 4 TiB; then
        // with stride 1, past the storage's end.
        (
            "huge.pt",
            [b"(".as_slice(), two_40, b"t"].concat(),
            b"(K\x00t",
            "declares 1099511627776 elements, which with the tensors before it take more than",
        ),
        (
            "huge_strided.pt",
            [b"(".as_slice(), two_40, b"t"].concat(),
            b"(K\x01t",
            "reaches past the end of its storage '0'",
        ),
        // 2^40 x 2^40 = 2^80 elements, which wrapped to 0 in `info`.
        (
            "2_80.pt",
            [b"(".as_slice(), two_40, two_40, b"t"].concat(),
            b"(K\x00K\x00t",
            "over 2^64 elements",
        ),
    ];
    for (name, size, stride, message) in cases {
        let f = write(d, name, &torch_zip(&tensor_dict(&size, stride), &storage));
        let err = refused_within_limits(&["info", f.to_str().unwrap()], message);
        assert!(err.contains("tensor 'w'") && err.contains(name), "{err}");
    }
}

#[test]
fn info_on_a_missing_path_names_that_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("x.pth");
    let err = refused_within_limits(
        &["info", missing.to_str().unwrap()],
        &format!("{}: No such file or directory", missing.display()),
    );
    assert!(!err.contains("dataset.json"), "{err}");
}
