//! Hostile checkpoints, built here byte by byte as an attacker would write
//! them: each ends in an error naming the limit it broke, quickly.

use super::pickle::{MAX_NESTING, MAX_NODES, MAX_STACK};
use super::{CheckpointError, parse};

/// BINUNICODE.
fn s(x: &str) -> Vec<u8> {
    let mut v = vec![b'X'];
    v.extend((x.len() as u32).to_le_bytes());
    v.extend(x.as_bytes());
    v
}

/// BININT (MARK ints TUPLE for a tuple).
fn ints(xs: &[i32]) -> Vec<u8> {
    let mut v = vec![b'('];
    for x in xs {
        v.push(b'J');
        v.extend(x.to_le_bytes());
    }
    v.push(b't');
    v
}

/// `_rebuild_tensor_v2(('storage', FloatStorage, '0', 'cpu', n), 0, size, stride)`.
fn tensor(size: &[u8], stride: &[u8]) -> Vec<u8> {
    let mut v = b"ctorch._utils\n_rebuild_tensor_v2\n((".to_vec();
    v.extend(s("storage"));
    v.extend(b"ctorch\nFloatStorage\n");
    v.extend(s("0"));
    v.extend(s("cpu"));
    v.extend(b"K\x04tQK\x00");
    v.extend(size);
    v.extend(stride);
    v.extend(b"tR");
    v
}

/// A `torch.save` zip of `pkl` as data.pkl and `storage` as storage '0'
/// (stored entries, no CRC: the reader checks none).
pub(crate) fn torch_zip(pkl: &[u8], storage: &[u8]) -> Vec<u8> {
    let (mut out, mut central) = (Vec::new(), Vec::new());
    let entries = [("archive/data.pkl", pkl), ("archive/data/0", storage)];
    for (name, data) in entries {
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

fn err(bytes: &[u8]) -> String {
    match parse(bytes) {
        Ok(ck) => panic!("read {} tensors", ck.tensors.len()),
        Err(e @ CheckpointError::Format { .. }) => e.to_string(),
        Err(e) => panic!("{e}"),
    }
}

/// `n` lists each inside the one before, built as `pickle` does: one list
/// per level on the stack, then one APPEND per level.
fn nested_on_stack(n: usize) -> Vec<u8> {
    let mut v = b"\x80\x02".to_vec();
    v.extend(std::iter::repeat_n(b']', n));
    v.extend(std::iter::repeat_n(b'a', n - 1));
    v.push(b'.');
    v
}

/// As [`nested_on_stack`], each level inside a MARK and APPENDS.
fn nested_in_marks(n: usize) -> Vec<u8> {
    let mut v = b"\x80\x02]".to_vec();
    for _ in 1..n {
        v.extend(b"(]");
    }
    v.extend(std::iter::repeat_n(b'e', n - 1));
    v.push(b'.');
    v
}

/// `n` nested lists made through the memo, so neither the stack nor the
/// MARKs grow: each level fetches the last list, appends a new one to it
/// and memoises that.
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

#[test]
fn deep_nesting_is_refused_in_linear_time() {
    let t = std::time::Instant::now();
    let e = err(&torch_zip(&nested_in_marks(3_000_000), b""));
    assert!(
        e.contains("MAX_NESTING") && e.contains(&MAX_NESTING.to_string()),
        "{e}"
    );
    let e = err(&torch_zip(&nested_on_stack(3_000_000), b""));
    assert!(
        e.contains("MAX_STACK") && e.contains(&MAX_STACK.to_string()),
        "{e}"
    );
    // 800k levels through the memo: all built, then the walk stops at its
    // depth limit (this took 50 s when the walk copied the path per level).
    let e = err(&torch_zip(&nested_through_memo(800_000), b""));
    assert!(e.contains("MAX_DEPTH"), "{e}");
    let e = err(&torch_zip(&nested_through_memo(MAX_NODES as u32), b""));
    assert!(e.contains("MAX_NODES"), "{e}");
    assert!(t.elapsed().as_secs() < 20, "{:?}", t.elapsed());
}

#[test]
fn a_tensor_wrapped_in_itself_is_refused() {
    // _rebuild_from_type_v2(f, cls, args, state) with args = a list that
    // holds the same call again: [f, cls, <the list>].
    let mut p = b"\x80\x02ctorch._tensor\n_rebuild_from_type_v2\nq\x00".to_vec();
    p.extend(b"]q\x01h\x00aNah\x01a"); // L = [f, None, L]
    p.extend(b"h\x00(h\x00Nh\x01Ntq\x02R."); // f(f, None, L, None)
    let e = err(&torch_zip(&p, b""));
    assert!(e.contains("MAX_TENSOR_WRAPPING"), "{e}");
}

fn dict_of(key: &str, value: &[u8]) -> Vec<u8> {
    let mut p = b"\x80\x02}".to_vec();
    p.extend(s(key));
    p.extend(value);
    p.extend(b"s.");
    p
}

#[test]
fn impossible_shapes_are_refused_naming_the_tensor() {
    let storage = [0u8; 16];
    for (size, stride, want) in [
        (ints(&[-3]), ints(&[1]), "negative size -3"),
        (ints(&[2]), ints(&[-1]), "negative stride -1"),
        // 2^40 elements over a storage of four, read with stride 0: inside
        // the storage, but 4 TiB to copy out.
        (
            b"(\x8a\x06\x00\x00\x00\x00\x00\x01t".to_vec(),
            ints(&[0]),
            "declares 1099511627776 elements, which with the tensors before it take more \
             than 256 times the file's size (the limit MAX_EXPANSION)",
        ),
        // 2^40 x 2^40: the element count overflows 64 bits.
        (
            b"(\x8a\x06\x00\x00\x00\x00\x00\x01\x8a\x06\x00\x00\x00\x00\x00\x01t".to_vec(),
            ints(&[0, 0]),
            "over 2^64 elements",
        ),
        // 2^80 as one dimension: not a 64-bit integer.
        (
            b"(\x8a\x0b\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01t".to_vec(),
            ints(&[1]),
            "not a 64-bit integer",
        ),
    ] {
        let e = err(&torch_zip(&dict_of("w", &tensor(&size, &stride)), &storage));
        assert!(e.contains("tensor 'w'") && e.contains(want), "{e}");
    }
}

#[test]
fn one_storage_read_out_many_times_is_refused() {
    // 2000 names for one 4 KiB tensor: 8 MiB read out of a 24 KiB file.
    // The tensor is memoised and popped, then fetched once per name.
    let mut p = b"\x80\x02}".to_vec();
    p.extend(tensor(&ints(&[1024]), &ints(&[1])));
    p.extend(b"q\x000(");
    for i in 0..2000 {
        p.extend(s(&format!("w{i}")));
        p.extend(b"h\x00");
    }
    p.extend(b"u.");
    let e = err(&torch_zip(&p, &[0u8; 4096]));
    assert!(e.contains("MAX_EXPANSION"), "{e}");
    // Two names for it (tied weights) are fine.
    let mut p = b"\x80\x02}".to_vec();
    p.extend(tensor(&ints(&[1024]), &ints(&[1])));
    p.extend(b"q\x000(");
    p.extend(s("a"));
    p.extend(b"h\x00");
    p.extend(s("b"));
    p.extend(b"h\x00u.");
    let ck = parse(&torch_zip(&p, &[0u8; 4096])).unwrap();
    assert_eq!(ck.tensors.len(), 2);
}

#[test]
fn a_declared_length_past_the_end_is_refused_before_allocating() {
    let mut p = b"\x80\x04\x8d".to_vec();
    p.extend((1u64 << 62).to_le_bytes());
    let e = err(&torch_zip(&p, b""));
    assert!(
        e.contains("4611686018427387904 bytes declared, 0 left"),
        "{e}"
    );
}

#[test]
fn long_names_and_too_many_tensors_are_refused() {
    let empty = tensor(&ints(&[0]), &ints(&[1]));
    let e = err(&torch_zip(&dict_of(&"k".repeat(5000), &empty), b""));
    assert!(
        e.contains("MAX_NAME_LEN") && e.contains("(5000 bytes)"),
        "{e}"
    );
    // MAX_TENSORS + 1 names for one empty tensor.
    let mut p = b"\x80\x02}".to_vec();
    p.extend(&empty);
    p.extend(b"q\x000(");
    for i in 0..=super::torch::MAX_TENSORS {
        p.extend(s(&i.to_string()));
        p.extend(b"h\x00");
    }
    p.extend(b"u.");
    let e = err(&torch_zip(&p, b""));
    assert!(e.contains("MAX_TENSORS"), "{e}");
}

#[test]
fn a_zip64_offset_near_the_end_of_memory_reads_as_missing() {
    // A zip64 locator before the end record, pointing at u64::MAX, and the
    // end record's directory offset set to "see zip64": the central
    // directory is unreadable, so the local headers are walked instead.
    let zip = torch_zip(&dict_of("w", &tensor(&ints(&[2]), &ints(&[1]))), &[0u8; 8]);
    let eocd = zip.len() - 22;
    let mut hostile = zip[..eocd].to_vec();
    hostile.extend(0x0706_4b50u32.to_le_bytes());
    hostile.extend(0u32.to_le_bytes());
    hostile.extend(u64::MAX.to_le_bytes());
    hostile.extend(1u32.to_le_bytes());
    hostile.extend(&zip[eocd..]);
    let at = hostile.len() - 22 + 16;
    hostile[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let ck = parse(&hostile).unwrap();
    assert_eq!(ck.tensors["w"].shape, [2]);
}
