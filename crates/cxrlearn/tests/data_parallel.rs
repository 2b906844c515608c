//! Data-parallel finetuning through the in-process thread collective (the
//! same code path NCCL drives on GPUs): two ranks, each training on its half
//! of every global batch, end with the single-process weights up to
//! floating-point reordering; with batch norm the ranks stay identical to
//! each other; MoCo follows the single process; GLoRIA's and REFERS' losses
//! and gradients split exactly over two ranks. Also: a launcher asking for
//! two ranks on a machine without GPUs fails before writing anything.

use crate::common;

use std::path::Path;
use std::sync::Arc;

use cxr_data::augment::Augment;
use cxr_data::store::read::Store;
use cxr_learn::classifier::Classifier;
use cxr_learn::dist::threads::run_ranks;
use cxr_learn::dist::{Collective, DataParallel};
use cxr_learn::finetune::{FinetuneConfig, Trainer};
use cxr_learn::optim::Rule;
use cxr_learn::schedule::Shape;
use cxr_nn::spec::ModelSpec;
use serde_json::Value;

type Weights = Vec<(String, Vec<f32>)>;

/// The training loops reseed libtorch's one generator every step, so the
/// training tests take their turn at libtorch ([`common::one_process`]).
fn serial() -> common::Turn {
    common::one_process()
}

struct Outcome {
    initial: Weights,
    weights: Weights,
    losses: Vec<f64>,
    val_aucs: Vec<f64>,
}

fn config(rule: Rule, channels_last: bool) -> FinetuneConfig {
    FinetuneConfig {
        epochs: 2,
        batch_size: 16,
        rule,
        lr: 1e-3,
        schedule: Shape::Cosine,
        warmup_epochs: 0.5,
        min_lr: 0.0,
        grad_clip: Some(5.0),
        augment: Some(Augment::finetune(64, 64)),
        class_balanced: true,
        patience: None,
        freeze_backbone: false,
        layer_decay: None,
        seed: 11,
        checkpoint_every: 0,
        precision: Default::default(),
        channels_last,
        // The per-tensor rule. The fused kernels agree with it within float
        // rounding (optim's unit tests), and so does this file's two-rank
        // run without gradient clipping; with clipping, any ulp-level change
        // of the weights (the fused kernels, or the per-tensor rule with its
        // learning rate scaled by 1 + 3e-7) moves this short trajectory
        // across a discontinuity of the backward pass: after one update,
        // with weights one ulp apart, the gradients of one channel of
        // layer3.0 (and of everything below it) differ by up to 3%, as when
        // an activation crosses zero, and the runs end 10% of an update
        // apart. The collective is what this file checks.
        fused_optimizer: false,
    }
}

/// Finetunes `arch` on `world` thread ranks; every rank's outcome. In the
/// default (NCHW) order: oneDNN's channels-last convolutions pick their
/// summation order by batch size, so half batches round differently from
/// whole ones and the drift over the steps would hide what this file
/// checks, the collective (channels-last has its own test below).
fn train(store: &Arc<Store>, arch: &str, rule: Rule, world: usize, dir: &Path) -> Vec<Outcome> {
    let channels_last = false;
    run_ranks(world, |group| {
        let rank = group.rank();
        let spec = ModelSpec::scratch(arch, 64, None).unwrap();
        let k = store.meta.labels.len() as i64;
        let model = Classifier::new(spec, k, tch::Device::Cpu, None, 5, false).unwrap();
        let run_dir = dir.join(format!("{arch}-w{world}-r{rank}-cl{channels_last}"));
        std::fs::create_dir_all(&run_dir).unwrap();
        let mut records: Vec<Value> = Vec::new();
        let mut log = |v: &Value| {
            records.push(v.clone());
            Ok(())
        };
        let initial = sorted(&model);
        let mut trainer = Trainer {
            store: store.clone(),
            model,
            config: config(rule, channels_last),
            dir: run_dir.clone(),
            log: &mut log,
            verbose: false,
            parallel: DataParallel::new(Arc::new(group)).with_bucket_bytes(64 << 10),
            train_rows: None,
        };
        trainer.run(false).unwrap();
        let weights = sorted(&trainer.model);
        // Only rank 0 writes checkpoints.
        assert_eq!(run_dir.join("last.safetensors").exists(), rank == 0);
        let of = |event: &str, key: &str| -> Vec<f64> {
            records
                .iter()
                .filter(|r| r["event"] == event)
                .filter_map(|r| r[key].as_f64())
                .collect()
        };
        Outcome {
            initial,
            weights,
            losses: of("step", "loss"),
            val_aucs: of("epoch", "val_macro_auc"),
        }
    })
}

fn sorted(model: &Classifier) -> Weights {
    let mut w: Weights = model
        .vs
        .variables()
        .into_iter()
        .map(|(n, t)| (n, Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()))
        .collect();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

fn l2(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// Per tensor, how far `b` ends from `a`, relative to how far `a` moved
/// from `init`; the worst tensor.
fn worst_relative_update_gap(init: &Weights, a: &Weights, b: &Weights) -> (String, f64) {
    let mut worst = (String::new(), 0.0);
    for ((name, w0), ((_, wa), (_, wb))) in init.iter().zip(a.iter().zip(b)) {
        let moved = l2(wa, w0);
        if moved == 0.0 {
            assert_eq!(wa, wb, "{name} stayed put in one run only");
            continue;
        }
        let gap = l2(wa, wb) / moved;
        if gap > worst.1 {
            worst = (name.clone(), gap);
        }
    }
    worst
}

#[test]
fn two_ranks_match_one_process() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&common::phantom_store(dir.path(), 90, 96, 1, 3)).unwrap());
    let adamw = Rule::AdamW {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 1e-4,
    };
    // Group norm: no statistic couples the samples of a batch.
    let one = train(&store, "resnet18-w16-gn", adamw, 1, dir.path());
    let two = train(&store, "resnet18-w16-gn", adamw, 2, dir.path());
    assert!(one[0].losses.len() >= 8, "{} steps", one[0].losses.len());
    // The ranks agree exactly: they apply the same summed gradients.
    assert!(two[0].weights == two[1].weights, "the ranks drifted apart");
    // Both start from the same weights, and the first update agrees to
    // float rounding: the gradients are the same sum in another order.
    assert!(
        one[0].initial == two[0].initial,
        "different starting weights"
    );
    assert!((one[0].losses[1] - two[0].losses[1]).abs() < 1e-6);
    // Rounding differences (per-rank kernels see half batches) grow slowly
    // over the steps; the updates still agree to about 1e-5.
    let (name, gap) = worst_relative_update_gap(&one[0].initial, &one[0].weights, &two[0].weights);
    eprintln!("worst gap {name} {gap}");
    assert!(
        gap < 1e-3,
        "2 ranks vs 1 process: {name} differs by {gap} of its update"
    );
    // The logged loss is the global batch's, on every step.
    assert_eq!(one[0].losses.len(), two[0].losses.len());
    for (a, b) in one[0].losses.iter().zip(&two[0].losses) {
        assert!((a - b).abs() < 1e-4 * a.abs().max(1.0), "loss {a} vs {b}");
    }
    // Validation is scored in parts and summed: the same AUC on every rank.
    assert_eq!(two[0].val_aucs, two[1].val_aucs);
    for (a, b) in one[0].val_aucs.iter().zip(&two[0].val_aucs) {
        assert!((a - b).abs() < 1e-3, "val AUC {a} vs {b}");
    }
    // The weights moved: the comparison is not between two initialisations.
    let init = train(
        &store,
        "resnet18-w16-gn",
        adamw,
        1,
        &dir.path().join("again"),
    );
    assert!(
        init[0].weights == one[0].weights,
        "same seed, different result"
    );

    // Batch norm sees per-rank batches (as DDP does), but rank 0's
    // statistics are broadcast, so the ranks never drift apart.
    let bn = train(&store, "resnet18-w16", adamw, 2, dir.path());
    assert!(
        bn[0].weights == bn[1].weights,
        "batch-norm ranks drifted apart"
    );
}

/// One training step's gradients in channels-last order (the default for
/// convolutional backbones) against the default NCHW order, on the same
/// weights and batch, both measured against the step in float64. A
/// randomly initialised ResNet-50 in training mode is ill-conditioned in
/// float32 (PyTorch's own NCHW gradients of `layer4` differ from float64's
/// by 20-40% of their largest value), so the bound is relative to NCHW's
/// own error: channels-last may not be more than twice as far from
/// float64, and on the small nets the two agree within 1e-4.
#[test]
fn channels_last_gradients_are_as_accurate_as_nchw_gradients() {
    let _serial = serial();
    for (arch, side) in [
        ("resnet18-w16", 64),
        ("resnet18-w16-gn", 64),
        ("resnet50", 128),
    ] {
        let grads = |channels_last: bool, double: bool| {
            let spec = ModelSpec::scratch(arch, side, None).unwrap();
            let mut model = Classifier::new(spec, 3, tch::Device::Cpu, None, 5, false).unwrap();
            if double {
                model.vs.double();
            }
            if channels_last {
                model.set_channels_last();
            }
            let s = side as usize;
            let images: Vec<u8> = (0..4 * s * s).map(|i| (i * 7 % 251) as u8).collect();
            let x = model.input(&images, 4);
            assert_eq!(cxr_nn::memory_format::is_channels_last(&x), channels_last);
            let x = if double {
                x.to_kind(tch::Kind::Double)
            } else {
                x
            };
            let targets =
                tch::Tensor::from_slice(&[1f32, 0., 1., 0., 0., 1., 1., 1., 0., 0., 1., 0.])
                    .view([4, 3]);
            let logits = model.forward_t(&x, true);
            let loss = logits.binary_cross_entropy_with_logits::<tch::Tensor>(
                &targets.to_kind(logits.kind()),
                None,
                None,
                tch::Reduction::Mean,
            );
            loss.backward();
            let mut g: Vec<(String, tch::Tensor)> = model
                .trainable()
                .into_iter()
                .map(|(n, v)| (n, v.grad().to_kind(tch::Kind::Double).contiguous()))
                .collect();
            g.sort_by(|a, b| a.0.cmp(&b.0));
            g
        };
        let worst = |a: &[(String, tch::Tensor)], b: &[(String, tch::Tensor)]| {
            let mut worst = (String::new(), 0.0);
            for ((name, ga), (_, gb)) in a.iter().zip(b) {
                let scale = ga.abs().max().double_value(&[]).max(1e-12);
                let err = (ga - gb).abs().max().double_value(&[]) / scale;
                if err > worst.1 {
                    worst = (name.clone(), err);
                }
            }
            worst
        };
        let exact = grads(false, true);
        let (nchw, nhwc) = (grads(false, false), grads(true, false));
        let (e_nchw, e_nhwc, between) = (
            worst(&exact, &nchw),
            worst(&exact, &nhwc),
            worst(&nchw, &nhwc),
        );
        eprintln!(
            "{arch}: worst gradient error against float64: NCHW {:.2e} ({}), channels-last {:.2e} ({}); between them {:.2e}",
            e_nchw.1, e_nchw.0, e_nhwc.1, e_nhwc.0, between.1
        );
        assert!(
            e_nhwc.1 <= 2.0 * e_nchw.1 + 1e-5,
            "{arch}: {e_nhwc:?} against {e_nchw:?}"
        );
        if arch != "resnet50" {
            assert!(between.1 < 1e-4, "{arch}: {between:?}");
        }
    }
}

/// `RANK=0 WORLD_SIZE=2` on a machine without GPUs: a clear error naming
/// the device, and no run directory.
#[test]
fn a_two_rank_launch_without_gpus_fails_cleanly() {
    if tch::Cuda::is_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let store = dir.path().join("no-store-needed");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cxrlearn"))
        .args(["finetune", "--model", "scratch:resnet18-w16-gn", "--data"])
        .arg(&store)
        .arg("--out")
        .arg(&out)
        .env("RANK", "1")
        .env("WORLD_SIZE", "2")
        .env("MASTER_PORT", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("cannot open store"), "{err}");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cxrlearn"))
        .args(["finetune", "--model", "scratch:resnet18-w16-gn", "--data"])
        .arg(common::phantom_store(dir.path(), 12, 64, 1, 1))
        .arg("--out")
        .arg(&out)
        .env("RANK", "1")
        .env("WORLD_SIZE", "2")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("needs CUDA device 1 but libtorch sees 0"),
        "{err}"
    );
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cxrlearn"))
        .args([
            "finetune",
            "--model",
            "scratch:resnet18-w16-gn",
            "--device",
            "cpu",
            "--data",
        ])
        .arg(dir.path().join("store"))
        .arg("--out")
        .arg(&out)
        .env("RANK", "0")
        .env("WORLD_SIZE", "2")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("rank 0 of 2") && err.contains("drop --device cpu"),
        "{err}"
    );
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cxrlearn"))
        .args(["finetune", "--model", "scratch:resnet18-w16-gn", "--data"])
        .arg(dir.path().join("store"))
        .arg("--out")
        .arg(&out)
        .env("RANK", "x")
        .env("WORLD_SIZE", "2")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("RANK=\"x\""), "{err}");
    assert!(!out.exists());
}

/// MoCo on a group-norm ResNet: two ranks (keys gathered into the queue,
/// each rank's loss a share of the global mean) follow the single-process
/// run: the same losses and, to rounding, the same encoder.
#[test]
fn two_rank_moco_matches_one_process() {
    use cxr_learn::ssl::moco::Moco;
    use cxr_learn::ssl::{Objective, PretrainConfig, Pretrainer};

    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let store_path = common::phantom_store(dir.path(), 90, 96, 1, 4);
    // The CLI resolves every setting; the threads reuse its config.toml.
    let cli = dir.path().join("cli");
    common::run_ok(&[
        "--quiet",
        "pretrain",
        "--method",
        "moco-cxr",
        "--data",
        store_path.to_str().unwrap(),
        "--out",
        cli.to_str().unwrap(),
        "--backbone",
        "resnet18-w16-gn",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--queue",
        "64",
        "--lr",
        "1e-3",
        "--key-momentum",
        "0.99",
        "--device",
        "cpu",
    ]);
    let doc: toml::Value =
        toml::from_str(&std::fs::read_to_string(cli.join("config.toml")).unwrap()).unwrap();
    let mut config: PretrainConfig = doc["pretrain"]["training"].clone().try_into().unwrap();
    config.epochs = 2;
    let store = Arc::new(Store::open(&store_path).unwrap());
    let spec = ModelSpec::scratch("resnet18-w16-gn", 64, None).unwrap();
    let initial: Weights = {
        let m = {
            let _init = cxr_learn::init_lock();
            Moco::new(
                spec.clone(),
                config.moco.clone(),
                tch::Device::Cpu,
                config.seed,
            )
        };
        let mut w: Weights = m
            .encoder()
            .into_iter()
            .map(|(n, t)| (n, Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()))
            .collect();
        w.sort_by(|a, b| a.0.cmp(&b.0));
        w
    };
    let train = |world: usize| -> Vec<(Weights, Vec<f64>)> {
        run_ranks(world, |group| {
            let rank = group.rank();
            let out = dir.path().join(format!("moco-w{world}-r{rank}"));
            std::fs::create_dir_all(&out).unwrap();
            let mut losses = Vec::new();
            let mut log = |v: &Value| {
                if v["event"] == "step" {
                    losses.push(v["loss"].as_f64().unwrap());
                }
                Ok(())
            };
            {
                let mut p = Pretrainer {
                    store: store.clone(),
                    spec: spec.clone(),
                    config: config.clone(),
                    dir: out.clone(),
                    device: tch::Device::Cpu,
                    log: &mut log,
                    verbose: false,
                    parallel: DataParallel::new(Arc::new(group)),
                };
                p.run(false).unwrap();
            }
            assert_eq!(out.join("encoder.safetensors").exists(), rank == 0);
            let weights = if rank == 0 {
                let ck = cxr_nn::checkpoint::load(&out.join("encoder.safetensors")).unwrap();
                let mut w: Weights = ck
                    .tensors
                    .iter()
                    .map(|(n, r)| {
                        (
                            n.clone(),
                            Vec::<f32>::try_from(r.to_tch().flatten(0, -1)).unwrap(),
                        )
                    })
                    .collect();
                w.sort_by(|a, b| a.0.cmp(&b.0));
                w
            } else {
                Vec::new()
            };
            (weights, losses)
        })
    };
    let one = train(1);
    let two = train(2);
    let (w1, l1) = &one[0];
    let (w2, l2) = &two[0];
    assert_eq!(l1.len(), l2.len());
    assert!(l1.len() >= 6, "{} steps", l1.len());
    // Rank 1 logs the same global losses.
    assert_eq!(&two[1].1, l2);
    assert!((l1[1] - l2[1]).abs() < 1e-6, "{} vs {}", l1[1], l2[1]);
    for (a, b) in l1.iter().zip(l2) {
        assert!((a - b).abs() < 1e-4 * a.abs().max(1.0), "loss {a} vs {b}");
    }
    let (name, gap) = worst_relative_update_gap(&initial, w1, w2);
    eprintln!("moco worst gap {name} {gap}");
    assert!(
        gap < 1e-3,
        "2 ranks vs 1 process: {name} differs by {gap} of its update"
    );
}

/// GLoRIA (every word against every image's regions) and REFERS (gathered
/// contrastive term, caption tokens counted over all ranks) split one
/// global batch over two thread ranks: the ranks' losses add up to the
/// single process's, and so do their gradients, for every variable. In
/// evaluation mode, so no dropout draw differs between the runs.
#[test]
fn two_rank_gloria_and_refers_split_the_global_loss_exactly() {
    use cxr_data::labels::Split;
    use cxr_learn::ssl::gloria::{Gloria, GloriaSettings};
    use cxr_learn::ssl::refers::{RefersObjective, RefersSettings};
    use cxr_learn::ssl::{Objective, Views};

    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let store_path = common::phantom_store(dir.path(), 60, 64, 1, 5);
    let store = Arc::new(Store::open(&store_path).unwrap());
    let train = store.split_indices(Split::Train);
    for (method, arch) in [("gloria", "resnet18-w16"), ("refers", "vit-tiny")] {
        let spec = ModelSpec::scratch(arch, 64, None).unwrap();
        let build = || -> Box<dyn Objective> {
            let _init = cxr_learn::init_lock();
            let cpu = tch::Device::Cpu;
            match method {
                "gloria" => Box::new(
                    Gloria::new(&store, &train, &spec, &GloriaSettings::for_size(64), cpu, 7)
                        .unwrap(),
                ),
                _ => Box::new(
                    RefersObjective::new(&store, &train, &spec, &RefersSettings::tiny(), cpu, 7)
                        .unwrap(),
                ),
            }
        };
        let rows: Vec<usize> = build().rows(train.clone())[..8].to_vec();
        let views_of = |rows: &[usize], k: usize| {
            let pixels: Vec<u8> = rows
                .iter()
                .flat_map(|&i| store.image(i).unwrap().to_vec())
                .collect();
            let x = spec
                .preprocessing
                .input(&pixels, rows.len(), 64, 64, tch::Device::Cpu);
            Views {
                rows: vec![rows.to_vec(); k],
                x: (0..k).map(|_| x.shallow_clone()).collect(),
            }
        };
        let run = |world: usize| {
            run_ranks(world, |group| {
                let mut model = build();
                let dp = DataParallel::new(Arc::new(group));
                assert!(model.join(&dp), "{method} joins");
                let n = rows.len() / world;
                let local = &rows[dp.rank() * n..(dp.rank() + 1) * n];
                let views = views_of(local, model.views());
                let (loss, fields) = model.loss(&views, 11, false).unwrap();
                loss.backward();
                let grads: Vec<(String, Vec<f64>)> = model
                    .trainable()
                    .into_iter()
                    .map(|(name, t)| {
                        let g = t.grad();
                        let g = if g.defined() { g } else { t.zeros_like() };
                        (
                            name,
                            Vec::<f64>::try_from(g.flatten(0, -1).to_kind(tch::Kind::Double))
                                .unwrap(),
                        )
                    })
                    .collect();
                (loss.double_value(&[]), grads, fields)
            })
        };
        let one = run(1);
        let two = run(2);
        let single = one[0].0;
        let summed = two[0].0 + two[1].0;
        assert!(
            (single - summed).abs() < 1e-5 * single.abs(),
            "{method}: one process {single}, two ranks {summed}"
        );
        // Both ranks log the global batch's terms.
        for key in [
            "loss_local",
            "loss_global",
            "loss_caption",
            "loss_contrastive",
        ] {
            if let Some(v) = one[0].2.get(key) {
                let v = v.as_f64().unwrap();
                for r in &two {
                    let w = r.2[key].as_f64().unwrap();
                    assert!(
                        (v - w).abs() < 1e-5 * v.abs().max(1.0),
                        "{method} {key}: {v} vs {w}"
                    );
                }
            }
        }
        // Gradients that are zero in exact arithmetic (an attention key's
        // bias) are compared against a floor of the largest gradient.
        let floor = 1e-3
            * one[0]
                .1
                .iter()
                .flat_map(|(_, g)| g.iter())
                .fold(0.0f64, |m, v| m.max(v.abs()));
        let mut worst = (String::new(), 0.0f64);
        for (k, (name, g1)) in one[0].1.iter().enumerate() {
            let (g2a, g2b) = (&two[0].1[k].1, &two[1].1[k].1);
            assert_eq!(&two[0].1[k].0, name);
            let scale = g1.iter().fold(floor, |m, v| m.max(v.abs()));
            let gap = g1
                .iter()
                .zip(g2a.iter().zip(g2b))
                .fold(0.0f64, |m, (a, (b, c))| m.max((a - b - c).abs()));
            if gap / scale > worst.1 {
                worst = (name.clone(), gap / scale);
            }
        }
        eprintln!(
            "{method}: loss {single}, worst gradient gap {} {:.2e}",
            worst.0, worst.1
        );
        assert!(
            worst.1 < 1e-4,
            "{method}: {} gradient differs by {:.2e}",
            worst.0,
            worst.1
        );
    }
}
