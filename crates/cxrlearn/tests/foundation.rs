//! The foundation models end to end on a phantom store: a random tiny DINOv2
//! and a tiny SigLIP, saved in Hugging Face format by transformers'
//! `save_pretrained` (the parity fixtures of cxr-nn, from
//! `scripts/fixtures/dinov2.py` and `siglip.py`), go through `import`,
//! `features`, `probe`, `zero-shot` and a benchmark grid beside the paper's
//! MoCo-CXR; bad directories fail with one `error:` line and write nothing.

use crate::common;

use std::path::{Path, PathBuf};

use common::{phantom_store, run, run_ok as cxrlearn};
use serde_json::Value;

/// A Hugging Face directory among cxr-nn's fixtures.
fn hf_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../cxr-nn/tests/fixtures")
        .join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The `features` tensor of a split file, as f32 values.
fn features_of(dir: &Path, split: &str) -> Vec<f32> {
    let ck = cxr_nn::checkpoint::load(&dir.join(format!("{split}.safetensors"))).unwrap();
    ck.tensors["features"]
        .to_f64()
        .into_iter()
        .map(|x| x as f32)
        .collect()
}

#[test]
fn dinov2_and_siglip_directories_through_the_whole_system() {
    let tmp = tempfile::tempdir().unwrap();
    let store = phantom_store(&tmp.path().join("p"), 60, 64, 1, 3);
    let dinov2 = hf_fixture("dinov2/registers");
    let siglip = hf_fixture("siglip/tiny");
    let hf_dinov2 = format!("hf:{}", s(&dinov2));
    let hf_siglip = format!("hf:{}", s(&siglip));

    // import: the directory becomes one safetensors file with a sidecar
    // that carries the shape; its features equal the directory's.
    let imported = tmp.path().join("dinov2.safetensors");
    cxrlearn(&[
        "--quiet",
        "import",
        "--model",
        &hf_dinov2,
        "--out",
        s(&imported),
    ]);
    let sidecar = json(&imported.with_extension("json"));
    assert_eq!(sidecar["architecture"], "dinov2");
    assert_eq!(sidecar["dinov2"]["num_register_tokens"], 4);
    assert!(sidecar["source"]["sha256"].as_object().unwrap().len() >= 2);
    let direct = tmp.path().join("f-direct");
    let via_file = tmp.path().join("f-file");
    for (model, out) in [(hf_dinov2.as_str(), &direct), (s(&imported), &via_file)] {
        cxrlearn(&[
            "--quiet",
            "features",
            "--model",
            model,
            "--pooling",
            "cls+mean",
            "--data",
            s(&store),
            "--out",
            s(out),
            "--device",
            "cpu",
        ]);
    }
    let meta = json(&direct.join("meta.json"));
    assert_eq!(meta["dim"], 64, "cls+mean of a 32-wide DINOv2");
    assert_eq!(meta["cache_key"]["pooling"], "cls+mean");
    assert_eq!(features_of(&direct, "test"), features_of(&via_file, "test"));
    // Another pooling is another cache entry.
    let cls = tmp.path().join("f-cls");
    cxrlearn(&[
        "--quiet",
        "features",
        "--model",
        &hf_dinov2,
        "--data",
        s(&store),
        "--out",
        s(&cls),
        "--device",
        "cpu",
    ]);
    assert_eq!(json(&cls.join("meta.json"))["dim"], 32);
    let both = features_of(&direct, "test");
    assert_eq!(
        &both[..32],
        &features_of(&cls, "test")[..32],
        "cls comes first"
    );

    // A SigLIP import round-trips too (its sidecar carries the tower's
    // shape; the text tower is left out of the features file).
    let siglip_file = tmp.path().join("siglip.safetensors");
    cxrlearn(&[
        "--quiet",
        "import",
        "--model",
        &hf_siglip,
        "--out",
        s(&siglip_file),
    ]);
    assert_eq!(
        json(&siglip_file.with_extension("json"))["architecture"],
        "siglip-visual"
    );
    let (sd, sf) = (tmp.path().join("s-direct"), tmp.path().join("s-file"));
    for (model, out) in [(hf_siglip.as_str(), &sd), (s(&siglip_file), &sf)] {
        cxrlearn(&[
            "--quiet",
            "features",
            "--model",
            model,
            "--data",
            s(&store),
            "--out",
            s(out),
            "--device",
            "cpu",
        ]);
    }
    assert_eq!(features_of(&sd, "test"), features_of(&sf, "test"));

    // probe: extracts the SigLIP image tower's features, then fits.
    let probe = tmp.path().join("probe");
    cxrlearn(&[
        "--quiet",
        "probe",
        "--model",
        &hf_siglip,
        "--data",
        s(&store),
        "--out",
        s(&probe),
        "--device",
        "cpu",
    ]);
    let evaluation = json(&probe.join("evaluation.json"));
    assert!(
        evaluation["macro"]["auc"].as_f64().is_some(),
        "{evaluation}"
    );

    // zero-shot: SigLIP scores each prompt by its sigmoid, with the
    // tokenizer.json its directory ships.
    let zs = tmp.path().join("zero-shot");
    cxrlearn(&[
        "--quiet",
        "zero-shot",
        "--model",
        &hf_siglip,
        "--data",
        s(&store),
        "--out",
        s(&zs),
        "--device",
        "cpu",
    ]);
    let config = std::fs::read_to_string(zs.join("config.toml")).unwrap();
    assert!(config.contains("sigmoid(exp(logit_scale)"), "{config}");
    assert!(config.contains("tokenizer.json"), "{config}");
    let preds = std::fs::read_to_string(zs.join("predictions-test.csv")).unwrap();
    let scores: Vec<f64> = preds
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(3).unwrap().parse().unwrap())
        .collect();
    assert!(!scores.is_empty());
    assert!(scores.iter().all(|p| (0.0..=1.0).contains(p)));
    // Sigmoids of distinct images differ (no constant score).
    assert!(scores.iter().any(|&p| (p - scores[0]).abs() > 1e-6));

    // finetune with layer-wise learning-rate decay; the finetuned model
    // is a model of its own (its sidecar carries the DINOv2 shape).
    let ft = tmp.path().join("finetune");
    cxrlearn(&[
        "--quiet",
        "finetune",
        "--model",
        &hf_dinov2,
        "--pooling",
        "cls+mean",
        "--layer-decay",
        "0.75",
        "--input-size",
        "56",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--data",
        s(&store),
        "--out",
        s(&ft),
        "--device",
        "cpu",
    ]);
    let config = std::fs::read_to_string(ft.join("config.toml")).unwrap();
    assert!(config.contains("layer_decay = 0.75"), "{config}");
    assert!(config.contains("pooling = \"cls+mean\""), "{config}");
    let tuned = tmp.path().join("f-tuned");
    cxrlearn(&[
        "--quiet",
        "features",
        "--model",
        s(&ft.join("model.safetensors")),
        "--data",
        s(&store),
        "--out",
        s(&tuned),
        "--device",
        "cpu",
    ]);
    assert_eq!(json(&tuned.join("meta.json"))["dim"], 64);

    // A benchmark grid: the paper's MoCo-CXR (a tiny recipe) and a random
    // baseline beside both directories, in one report.
    let grid = tmp.path().join("grid.toml");
    std::fs::write(
        &grid,
        format!(
            r#"baseline = "random"
strategies = ["linear"]
seeds = [0]

[[dataset]]
name = "p"
store = "{store}"

[[model]]
name = "random"
model = "scratch:resnet18-w16"

[[model]]
name = "moco"
pretrain = {{ method = "moco-cxr", data = "p", backbone = "resnet18-w16", epochs = 1, batch_size = 16, queue = 64 }}

[[model]]
name = "dinov2"
model = "{hf_dinov2}"
pooling = "cls+mean"

[[model]]
name = "siglip"
model = "{hf_siglip}"

[report]
n_bootstrap = 50
"#,
            store = s(&store),
        ),
    )
    .unwrap();
    let out = tmp.path().join("bench");
    cxrlearn(&[
        "--quiet",
        "benchmark",
        "--config",
        s(&grid),
        "--out",
        s(&out),
    ]);
    for model in ["random", "moco", "dinov2", "siglip"] {
        let cell = json(
            &out.join("cells/p")
                .join(model)
                .join("linear/seed-0/cell.json"),
        );
        assert_eq!(cell["status"], "ok", "{model}: {cell}");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for model in ["moco", "dinov2", "siglip"] {
        assert!(report.contains(model), "{model} missing from the report");
    }
}

/// Runs `features` on `model` into a fresh directory and returns stderr,
/// asserting the run failed with one `error:` line and wrote nothing.
fn refused(tmp: &Path, store: &Path, model: &str) -> String {
    let out = tmp.join("refused-out");
    let o = run(&[
        "features",
        "--model",
        model,
        "--data",
        s(store),
        "--out",
        s(&out),
    ]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{model} was accepted");
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!out.exists(), "{model}: output written");
    let imported = tmp.join("refused.safetensors");
    let o = run(&["import", "--model", model, "--out", s(&imported)]);
    assert!(!o.status.success());
    assert!(!imported.exists() && !imported.with_extension("json").exists());
    err
}

#[test]
fn bad_directories_fail_with_one_line_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = phantom_store(&tmp.path().join("p"), 20, 64, 1, 4);
    let mlp = hf_fixture("dinov2/mlp");
    let dir = |name: &str| {
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    };

    // An architecture cxrlearn does not build, named.
    let vit_mae = dir("vit-mae");
    std::fs::write(vit_mae.join("config.json"), r#"{"model_type": "vit_mae"}"#).unwrap();
    std::fs::copy(
        mlp.join("model.safetensors"),
        vit_mae.join("model.safetensors"),
    )
    .unwrap();
    let err = refused(tmp.path(), &store, &format!("hf:{}", s(&vit_mae)));
    assert!(
        err.contains("\"vit_mae\"") && err.contains("dinov2"),
        "{err}"
    );

    // A configuration far larger than its weights: refused by size before
    // anything is allocated (building it would exhaust memory).
    let huge = dir("huge");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(mlp.join("config.json")).unwrap()).unwrap();
    config["hidden_size"] = 65536.into();
    config["num_attention_heads"] = 64.into();
    config["num_hidden_layers"] = 200.into();
    std::fs::write(huge.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(
        mlp.join("model.safetensors"),
        huge.join("model.safetensors"),
    )
    .unwrap();
    let err = refused(tmp.path(), &store, &format!("hf:{}", s(&huge)));
    assert!(err.contains("does not match its weights"), "{err}");

    // A shard the index names but the directory lacks.
    let sharded = dir("sharded");
    std::fs::copy(mlp.join("config.json"), sharded.join("config.json")).unwrap();
    std::fs::copy(
        mlp.join("model.safetensors"),
        sharded.join("model-00001-of-00002.safetensors"),
    )
    .unwrap();
    std::fs::write(
        sharded.join("model.safetensors.index.json"),
        r#"{"metadata": {}, "weight_map": {"embeddings.cls_token": "model-00001-of-00002.safetensors", "layernorm.weight": "model-00002-of-00002.safetensors"}}"#,
    )
    .unwrap();
    let err = refused(tmp.path(), &store, &format!("hf:{}", s(&sharded)));
    assert!(err.contains("model-00002-of-00002.safetensors"), "{err}");

    // A shard holding tensors its index places elsewhere.
    std::fs::write(
        sharded.join("model.safetensors.index.json"),
        r#"{"metadata": {}, "weight_map": {"embeddings.cls_token": "model-00001-of-00002.safetensors"}}"#,
    )
    .unwrap();
    let err = refused(tmp.path(), &store, &format!("hf:{}", s(&sharded)));
    assert!(err.contains("does not place"), "{err}");

    // A configuration that does not match its weights (registers the
    // weights lack): every mismatched key named.
    let mismatched = dir("mismatched");
    std::fs::copy(
        hf_fixture("dinov2/registers/config.json"),
        mismatched.join("config.json"),
    )
    .unwrap();
    std::fs::copy(
        mlp.join("model.safetensors"),
        mismatched.join("model.safetensors"),
    )
    .unwrap();
    let err = refused(tmp.path(), &store, &format!("hf:{}", s(&mismatched)));
    assert!(err.contains("embeddings.register_tokens"), "{err}");

    // A registry entry's directory whose own preprocessing differs: the
    // file's is used, and the user is told.
    let rad = dir("rad");
    std::fs::copy(mlp.join("config.json"), rad.join("config.json")).unwrap();
    std::fs::copy(mlp.join("model.safetensors"), rad.join("model.safetensors")).unwrap();
    std::fs::write(
        rad.join("preprocessor_config.json"),
        r#"{"crop_size": {"height": 56, "width": 56}, "size": {"shortest_edge": 56}, "image_mean": [0.5], "image_std": [0.25]}"#,
    )
    .unwrap();
    let out = tmp.path().join("rad-features");
    let o = run(&[
        "features",
        "--model",
        "rad-dino",
        "--checkpoint",
        s(&rad),
        "--data",
        s(&store),
        "--out",
        s(&out),
        "--device",
        "cpu",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("note: ") && err.contains("using the file's"),
        "{err}"
    );
    let meta = json(&out.join("meta.json"));
    assert_eq!(meta["normalization"]["mean"][0], 0.5, "{meta}");

    // A directory for the wrong family of a registry entry, and --pooling
    // where there is no choice of pooling: refused, nothing written.
    let x = tmp.path().join("x");
    let features_err = |model_args: &[&str]| {
        let mut args = vec!["features"];
        args.extend_from_slice(model_args);
        args.extend(["--data", s(&store), "--out", s(&x)]);
        let o = run(&args);
        assert!(!o.status.success(), "{model_args:?} was accepted");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let err = features_err(&["--model", "biomedclip", "--checkpoint", s(&mlp)]);
    assert!(err.contains("open_clip_config.json"), "{err}");
    let err = features_err(&["--model", "medsiglip-448", "--checkpoint", s(&mlp)]);
    assert!(err.contains("not a MedSigLIP"), "{err}");
    let err = features_err(&["--model", "scratch:resnet18-w16", "--pooling", "mean"]);
    assert!(err.contains("--pooling applies to"), "{err}");
    assert!(!tmp.path().join("x").exists());
}
