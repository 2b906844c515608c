//! `cxrlearn import` and `cxrlearn models` end to end.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;

use common::run as cxrlearn;

use cxr_nn::backbone::Backbone;
use cxr_nn::checkpoint::{RawTensor, parse, to_safetensors};
use cxr_nn::registry;
use serde_json::Value;
use tch::nn::VarStore;
use tch::{Device, Tensor};

/// A MedAug-style release of a randomly initialised ResNet-50, as safetensors.
fn write_release(path: &Path) -> BTreeMap<String, RawTensor> {
    let vs = VarStore::new(Device::Cpu);
    let _net = Backbone::new(&vs.root(), &registry::find("medaug").unwrap().architecture);
    let weights: BTreeMap<String, RawTensor> = vs
        .variables()
        .iter()
        .map(|(k, v)| (k.clone(), RawTensor::from_tch(k, v).unwrap()))
        .collect();
    let mut file: BTreeMap<String, RawTensor> = weights
        .iter()
        .map(|(k, v)| (format!("module.encoder_q.{k}"), v.clone()))
        .collect();
    let queue = RawTensor {
        dtype: cxr_nn::checkpoint::DType::F32,
        shape: vec![2, 3],
        data: vec![0; 24],
    };
    file.insert("module.queue".into(), queue);
    std::fs::write(path, to_safetensors(&file, None).unwrap()).unwrap();
    weights
}

#[test]
fn import_writes_validated_safetensors_and_a_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("medaug.safetensors");
    let weights = write_release(&src);
    let out = dir.path().join("out/medaug-imported.safetensors");
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let args = [
        "--quiet",
        "import",
        "--model",
        "medaug",
        "--checkpoint",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let o = cxrlearn(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let written = parse(&std::fs::read(&out).unwrap()).unwrap();
    let (counters, rest): (BTreeMap<_, _>, BTreeMap<_, _>) = written
        .tensors
        .into_iter()
        .partition(|(k, _)| k.ends_with("num_batches_tracked"));
    assert_eq!(rest, weights);
    assert_eq!(
        counters.len(),
        53,
        "one counter per batch norm of ResNet-50"
    );
    let sidecar: Value =
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(sidecar["model"], "medaug");
    assert_eq!(sidecar["feature_dim"], 2048);
    assert_eq!(sidecar["tensors"], weights.len());
    assert_eq!(sidecar["ignored"][0]["name"], "module.queue");
    assert_eq!(sidecar["source"]["sha256"].as_str().unwrap().len(), 64);

    // An existing output is kept unless --force.
    let o = cxrlearn(&args);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("exists; replace it with --force"));

    // The wrong model: an error naming keys, and nothing written.
    let other = dir.path().join("out/refers.safetensors");
    let o = cxrlearn(&[
        "import",
        "--model",
        "refers",
        "--checkpoint",
        src.to_str().unwrap(),
        "--out",
        other.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("missing keys: transformer."), "{stderr}");
    assert!(!other.exists() && !other.with_extension("json").exists());
}

#[test]
fn bad_checkpoints_and_unknown_models_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pt");
    std::fs::write(&junk, b"definitely not a checkpoint").unwrap();
    let out = dir.path().join("o.safetensors");
    for (model, file, expect) in [
        ("medaug", junk.to_str().unwrap(), "not a PyTorch checkpoint"),
        (
            "medaug",
            "/nonexistent/x.pt",
            "cannot read /nonexistent/x.pt",
        ),
        (
            "resnet99",
            junk.to_str().unwrap(),
            "unknown model 'resnet99'",
        ),
    ] {
        let o = cxrlearn(&[
            "import",
            "--model",
            model,
            "--checkpoint",
            file,
            "--out",
            out.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(stderr.contains(expect), "{stderr}");
        assert!(!stderr.contains("panicked"));
        assert!(!out.exists());
    }
}

#[test]
fn models_lists_every_entry() {
    let o = cxrlearn(&["models", "--json"]);
    assert!(o.status.success());
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), registry::all().len());
    assert!(names.contains(&"chexzero") && names.contains(&"s2mts2"));
    let chexzero = &list[1];
    assert_eq!(chexzero["feature_dim"], 512);
    assert_eq!(chexzero["preprocessing"]["size"], 224);
    let table = cxrlearn(&["models"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("refers"));
    // The ResNet-18 releases of the MoCo methods, with their file names.
    for (name, file) in [
        ("mococxr-resnet18", "moco-cxr_resnet18.pth.tar"),
        ("medaug-resnet18", "medaug_mimic-cxr_resnet18.pth.tar"),
    ] {
        let e = list
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} not listed"));
        assert_eq!(e["feature_dim"], 512);
        assert!(e["checkpoint_file"].as_str().unwrap().starts_with(file));
        assert_eq!(e["preprocessing"]["size"], 320);
    }
}

/// A ResNet-18 MoCo-CXR release (the PyTorch-written fixture) offered as the
/// ResNet-50 entry: one error naming the entry to use, nothing written; under
/// that entry it imports.
#[test]
fn resnet18_release_as_resnet50_entry_names_the_right_one() {
    let release = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../cxr-nn/tests/fixtures/moco/moco-cxr_resnet18.pth.tar");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mococxr.safetensors");
    let run = |model: &str| {
        cxrlearn(&[
            "--quiet",
            "import",
            "--model",
            model,
            "--checkpoint",
            release.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let o = run("mococxr");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.trim_end().ends_with(
            "as 'mococxr': checkpoint holds a ResNet-18, but model 'mococxr' is the \
             ResNet-50 variant of MoCo-CXR: use --model mococxr-resnet18"
        ),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!out.exists() && !out.with_extension("json").exists());

    let o = run("mococxr-resnet18");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sidecar: Value =
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(sidecar["model"], "mococxr-resnet18");
    assert_eq!(sidecar["feature_dim"], 512);
}

/// A torchvision ResNet-50 state dict (names and shapes from torchvision
/// 0.28, values random) comes back out with exactly torchvision's names,
/// shapes and values: the export loads into `torchvision.models.resnet50()`
/// with `strict=True` (the classifier is the only part left out).
#[test]
fn export_round_trips_torchvision_names() {
    let names_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../cxr-nn/tests/fixtures/resnet/torchvision_names.json");
    let names: Value = serde_json::from_str(&std::fs::read_to_string(names_path).unwrap()).unwrap();
    let mut source = BTreeMap::new();
    for (k, shape) in names["resnet50"].as_object().unwrap() {
        let shape: Vec<usize> = shape
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let n: usize = shape.iter().product();
        let t = if k.ends_with("num_batches_tracked") {
            RawTensor {
                dtype: cxr_nn::checkpoint::DType::I64,
                shape,
                data: 7i64.to_le_bytes().to_vec(),
            }
        } else {
            let values = Tensor::randn([n as i64], (tch::Kind::Float, Device::Cpu));
            RawTensor::from_tch(
                k,
                &values.view(
                    shape
                        .iter()
                        .map(|&d| d as i64)
                        .collect::<Vec<_>>()
                        .as_slice(),
                ),
            )
            .unwrap()
        };
        source.insert(k.clone(), t);
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("resnet50.safetensors");
    std::fs::write(&src, to_safetensors(&source, None).unwrap()).unwrap();
    let out = dir.path().join("exported.safetensors");
    let o = cxrlearn(&[
        "--quiet",
        "import",
        "--model",
        "resnet50-imagenet",
        "--checkpoint",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let exported = parse(&std::fs::read(&out).unwrap()).unwrap().tensors;
    let expected: BTreeMap<_, _> = source
        .into_iter()
        .filter(|(k, _)| !k.starts_with("fc."))
        .collect();
    assert_eq!(exported, expected);
}

#[test]
fn info_summarises_a_checkpoint() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../cxr-nn/tests/fixtures/checkpoints/moco.pth.tar");
    let o = cxrlearn(&["info", path.to_str().unwrap(), "--limit", "0"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("container  TorchZip"), "{text}");
    assert!(
        text.contains("state_dict.module.encoder_q.conv1.weight F32 [4, 1, 3, 3]"),
        "{text}"
    );
    assert!(
        text.contains("state_dict.module.queue_ptr I64 [1]"),
        "{text}"
    );
    let o = cxrlearn(&["info", "/nonexistent/store"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).starts_with("error: "));
}
