//! Checkpoint containers written by PyTorch 2.13 (`scripts/fixtures/checkpoints.py`)
//! read back exactly, without executing anything.

use std::path::{Path, PathBuf};

use cxr_nn::checkpoint::{Checkpoint, Container, DType, load, parse, to_safetensors};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/checkpoints")
        .join(name)
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap()
}

fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "float32",
        DType::F64 => "float64",
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        DType::I64 => "int64",
        DType::I32 => "int32",
        DType::I16 => "int16",
        DType::I8 => "int8",
        DType::U8 => "uint8",
        DType::Bool => "bool",
    }
}

fn assert_matches(ck: &Checkpoint, name: &str, want: &Value) {
    let t = ck
        .tensors
        .get(name)
        .unwrap_or_else(|| panic!("missing {name}; have {:?}", ck.tensors.keys()));
    assert_eq!(
        dtype_name(t.dtype),
        want["dtype"].as_str().unwrap(),
        "{name}"
    );
    let shape: Vec<usize> = want["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(t.shape, shape, "{name}");
    let values: Vec<f64> = want["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(t.to_f64(), values, "{name}");
}

#[test]
fn state_dict_zip_and_legacy_match_torch_exactly() {
    let exp = expected();
    let tensors = exp["tensors"].as_object().unwrap();
    for (file, container) in [
        ("state_dict.pt", Container::TorchZip),
        ("state_dict_legacy.pt", Container::TorchLegacy),
    ] {
        let ck = load(&fixture(file)).unwrap();
        assert_eq!(ck.container, container);
        let mut n = 0;
        for (name, want) in tensors.iter().filter(|(k, _)| !k.contains(':')) {
            assert_matches(&ck, name, want);
            n += 1;
        }
        assert_eq!(
            ck.tensors.len(),
            n,
            "{file}: unexpected extra tensors {:?}",
            ck.tensors.keys()
        );
    }
}

#[test]
fn lightning_checkpoint_reads_state_dict_and_ignores_unknown_classes() {
    let ck = load(&fixture("lightning.ckpt")).unwrap();
    let exp = expected();
    let mut n = 0;
    for (name, want) in exp["tensors"].as_object().unwrap() {
        if let Some(name) = name.strip_prefix("lightning:") {
            assert_matches(&ck, name, want);
            n += 1;
        }
    }
    assert_eq!(
        n, 7,
        "conv weight and bias, BN weight, bias, running stats and counter"
    );
    // Tensors inside optimizer state and inside an unknown callback class are
    // found too, under their paths.
    assert!(
        ck.tensors
            .contains_key("optimizer_states.0.state.0.momentum_buffer")
    );
    assert!(ck.tensors.contains_key("callbacks.ModelCheckpoint.best"));
}

#[test]
fn moco_dict_keeps_prefixed_names() {
    let ck = load(&fixture("moco.pth.tar")).unwrap();
    let q = &ck.tensors["state_dict.module.encoder_q.conv1.weight"];
    let k = &ck.tensors["state_dict.module.encoder_k.conv1.weight"];
    assert_eq!(q.shape, [4, 1, 3, 3]);
    let (q, k) = (q.to_f64(), k.to_f64());
    assert!(q.iter().zip(&k).all(|(a, b)| (2.0 * a - b).abs() < 1e-6));
    assert_eq!(ck.tensors["state_dict.module.queue_ptr"].dtype, DType::I64);
}

#[test]
fn code_in_a_pickle_is_never_run() {
    let marker = Path::new("/tmp/cxrlearn-pickle-was-executed");
    let _ = std::fs::remove_file(marker);
    let ck = load(&fixture("evil.pt")).unwrap();
    assert_eq!(ck.tensors["weight"].shape, [3, 4]);
    assert_eq!(ck.tensors.len(), 1);
    assert!(!marker.exists());
}

#[test]
fn safetensors_round_trip_and_tch_conversion() {
    let ck = load(&fixture("state_dict.pt")).unwrap();
    let bytes = to_safetensors(&ck.tensors, None).unwrap();
    let back = parse(&bytes).unwrap();
    assert_eq!(back.container, Container::Safetensors);
    assert_eq!(back.tensors, ck.tensors);
    let t = ck.tensors["transposed"].to_tch();
    assert_eq!(t.size(), [4, 3]);
    // base = arange(12).reshape(3, 4) * 0.5 - 1, transposed: t[i][j] = base[j][i].
    assert_eq!(t.double_value(&[1, 2]), (2.0 * 4.0 + 1.0) * 0.5 - 1.0);
    assert_eq!(ck.tensors["half"].to_tch().kind(), tch::Kind::Half);
}

#[test]
fn truncated_and_foreign_files_fail_with_a_reason() {
    let bytes = std::fs::read(fixture("state_dict.pt")).unwrap();
    for cut in [10, 100, bytes.len() / 2, bytes.len() - 30] {
        let err = parse(&bytes[..cut]).unwrap_err().to_string();
        assert!(!err.is_empty());
    }
    let legacy = std::fs::read(fixture("state_dict_legacy.pt")).unwrap();
    let err = parse(&legacy[..legacy.len() - 5]).unwrap_err().to_string();
    assert!(err.contains("truncated"), "{err}");
    let err = parse(b"hello world, not a checkpoint")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a PyTorch checkpoint"), "{err}");
    let err = load(Path::new("/nonexistent/model.pt"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/model.pt"), "{err}");
}
