//! `cxrlearn features` end to end: a store from PNGs, weights in a
//! Lightning-style layout, features checked against a direct computation,
//! batch-size independence (eval mode) and the cache.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;

use common::run_ok as cxrlearn;

use cxr_nn::arch::resnet::{ResNet, ResNetConfig};
use cxr_nn::checkpoint::{RawTensor, load, to_safetensors};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Nine 40x40 grayscale PNGs from three patients, one binary label.
fn make_store(dir: &Path) -> std::path::PathBuf {
    let images = dir.join("raw");
    std::fs::create_dir_all(&images).unwrap();
    let mut csv = String::from("file,patient,Finding\n");
    for i in 0..9u32 {
        let img = image::GrayImage::from_fn(40, 40, |x, y| {
            image::Luma([((x * 7 + y * 3 + i * 29) % 256) as u8])
        });
        img.save(images.join(format!("img{i}.png"))).unwrap();
        csv.push_str(&format!("img{i}.png,p{},{}\n", i % 3, i % 2));
    }
    std::fs::write(dir.join("labels.csv"), csv).unwrap();
    let store = dir.join("store");
    cxrlearn(&[
        "--quiet",
        "convert",
        "--csv",
        dir.join("labels.csv").to_str().unwrap(),
        "--image-root",
        images.to_str().unwrap(),
        "--path-column",
        "file",
        "--label-columns",
        "Finding",
        "--task",
        "binary",
        "--patient-column",
        "patient",
        "--size",
        "32",
        "--out",
        store.to_str().unwrap(),
    ]);
    store
}

#[test]
fn features_match_a_direct_computation_and_are_cached() {
    let dir = tempfile::tempdir().unwrap();
    let store = make_store(dir.path());
    // GLoRIA ResNet-18 weights in its Lightning layout.
    let vs = VarStore::new(Device::Cpu);
    let net = ResNet::new(&vs.root(), &ResNetConfig::resnet18(None));
    let file: BTreeMap<String, RawTensor> = vs
        .variables()
        .iter()
        .map(|(k, v)| {
            (
                format!("state_dict.gloria.img_encoder.model.{k}"),
                RawTensor::from_tch(k, v).unwrap(),
            )
        })
        .collect();
    let weights = dir.path().join("gloria18.safetensors");
    std::fs::write(&weights, to_safetensors(&file, None).unwrap()).unwrap();

    let run = |out: &Path, batch: &str| {
        cxrlearn(&[
            "features",
            "--model",
            "gloria-resnet18",
            "--checkpoint",
            weights.to_str().unwrap(),
            "--data",
            store.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--device",
            "cpu",
            "--batch-size",
            batch,
        ])
    };
    let out = dir.path().join("feats");
    let o = run(&out, "4");
    assert!(String::from_utf8_lossy(&o.stderr).contains("resizing to 224x224"));

    let mut total = 0;
    for split in ["train", "val", "test"] {
        let f = load(&out.join(format!("{split}.safetensors"))).unwrap();
        let n = f.tensors["index"].shape[0];
        total += n;
        assert_eq!(f.tensors["features"].shape, [n, 512]);
        assert_eq!(f.tensors["labels"].shape, [n, 1]);
    }
    assert_eq!(total, 9);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["dim"], 512);
    assert_eq!(meta["labels"][0], "Finding");

    // Reference for the training split: the registry's preprocessing by hand.
    let store_handle = cxr_data::store::read::Store::open(&store).unwrap();
    let train = load(&out.join("train.safetensors")).unwrap();
    let index: Vec<i64> = train.tensors["index"]
        .to_f64()
        .iter()
        .map(|&v| v as i64)
        .collect();
    let mut pixels = Vec::new();
    for &i in &index {
        pixels.extend_from_slice(store_handle.image(i as usize).unwrap());
        let label = train.tensors["labels"].to_f64()[pixels.len() / (32 * 32) - 1];
        assert_eq!(Some(label as f32), store_handle.rows[i as usize].targets[0]);
    }
    let x = Tensor::from_slice(&pixels)
        .view([index.len() as i64, 1, 32, 32])
        .to_kind(Kind::Float)
        / 255.0;
    let x = x
        .upsample_bilinear2d([224, 224], false, None, None)
        .expand([-1, 3, 224, 224], false);
    let x = ((x - 0.5) / 0.5).upsample_bilinear2d([299, 299], true, None, None);
    let reference = tch::no_grad(|| net.features_t(&x, false));
    let ours = train.tensors["features"].to_tch();
    let err = (&ours - &reference).abs().max().double_value(&[])
        / reference.abs().max().double_value(&[]);
    assert!(
        err < 1e-4,
        "features differ from the direct computation: {err}"
    );

    // Eval mode: the batch size does not change any feature.
    let other = dir.path().join("feats-b1");
    run(&other, "1");
    let again = load(&other.join("train.safetensors")).unwrap();
    let err = (again.tensors["features"].to_tch() - &ours)
        .abs()
        .max()
        .double_value(&[]);
    assert!(err < 1e-4, "batch size changed features by {err}");

    // Same model, same store: the cache is reused.
    let before = std::fs::metadata(out.join("train.safetensors"))
        .unwrap()
        .modified()
        .unwrap();
    let o = run(&out, "4");
    assert!(String::from_utf8_lossy(&o.stderr).contains("cached"));
    assert_eq!(
        std::fs::metadata(out.join("train.safetensors"))
            .unwrap()
            .modified()
            .unwrap(),
        before
    );
}

#[test]
fn features_refuse_missing_weights_and_strict_size() {
    let dir = tempfile::tempdir().unwrap();
    let store = make_store(dir.path());
    let out = dir.path().join("f");
    let (store, out) = (store.to_str().unwrap(), out.to_str().unwrap());
    let base = [
        "features", "--model", "chexzero", "--data", store, "--out", out,
    ];
    let o = common::run(&base);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs --checkpoint"));
    let o = common::run(&[&base[..], &["--checkpoint", "/dev/null", "--strict"]].concat());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("store images are 32x32 but 'chexzero' takes 224x224"),
        "{stderr}"
    );
    assert!(!Path::new(out).exists());
}

/// `--device cuda` without a usable GPU: one `error:` line that names what
/// is missing, as `info --system` diagnoses it, and nothing written.
#[test]
fn device_cuda_without_a_gpu_names_what_is_missing() {
    let system: serde_json::Value =
        serde_json::from_slice(&cxrlearn(&["info", "--system", "--json"]).stdout).unwrap();
    if !system["devices"].as_array().unwrap().is_empty() {
        return; // a GPU machine: tests/gpu.rs covers it
    }
    let dir = tempfile::tempdir().unwrap();
    let store = make_store(dir.path());
    let out = dir.path().join("f");
    let o = common::run(&[
        "features",
        "--model",
        "scratch:resnet18",
        "--data",
        store.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--device",
        "cuda",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: cuda:0 requested but "),
        "{stderr}"
    );
    let expected = if system["cuda_support"] == true {
        "no NVIDIA driver"
    } else {
        "CPU-only build"
    };
    assert!(
        stderr.contains(expected) || stderr.contains("sees no CUDA device"),
        "{stderr}"
    );
    assert!(!out.exists());
}
