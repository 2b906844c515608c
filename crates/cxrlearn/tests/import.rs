//! `cxrlearn import` and `cxrlearn models` end to end.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use cxr_nn::backbone::Backbone;
use cxr_nn::checkpoint::{RawTensor, parse, to_safetensors};
use cxr_nn::registry;
use serde_json::Value;
use tch::Device;
use tch::nn::VarStore;

fn cxrlearn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cxrlearn"))
        .args(args)
        .output()
        .expect("run cxrlearn")
}

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
    assert_eq!(written.tensors, weights);
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
    assert!(String::from_utf8_lossy(&o.stderr).contains("exists (use --force"));

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
}
