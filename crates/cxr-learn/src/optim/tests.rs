//! The update rules against their recurrences by hand, state round trips,
//! and the fused kernels against the per-tensor rule.

use super::*;

fn with_grads(grads: &[f64]) -> (Optimizer, Tensor) {
    let w = Tensor::zeros([grads.len() as i64], (Kind::Double, tch::Device::Cpu))
        .set_requires_grad(true);
    let target = Tensor::from_slice(grads);
    // d/dw sum(w * target) = target.
    (&w * &target).sum(Kind::Double).backward();
    (
        Optimizer::new(
            Rule::Sgd {
                momentum: 0.0,
                weight_decay: 0.0,
            },
            vec![("w".into(), w.shallow_clone())],
        ),
        w,
    )
}

#[test]
fn parameter_groups_scale_the_learning_rate() {
    // Two parameters with the same gradient; SGD without momentum moves
    // each by its own lr * g, AdamW's first step by its own lr (sign(g)).
    for rule in [
        Rule::Sgd {
            momentum: 0.0,
            weight_decay: 0.0,
        },
        Rule::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-12,
            weight_decay: 0.0,
        },
    ] {
        let a = Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
        let b = Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
        let mut opt = Optimizer::new(
            rule,
            vec![
                ("image.w".into(), a.shallow_clone()),
                ("text.bert.w".into(), b.shallow_clone()),
            ],
        );
        assert_eq!(opt.set_lr_scale(|n| n.starts_with("text.bert."), 0.1), 1);
        (&a * 2.0 + &b * 2.0).sum(Kind::Double).backward();
        opt.step(0.5);
        let moved = |t: &Tensor| 1.0 - t.double_value(&[0]);
        let expect = if matches!(rule, Rule::Sgd { .. }) {
            1.0
        } else {
            0.5
        };
        assert!((moved(&a) - expect).abs() < 1e-9, "{rule:?}");
        assert!((moved(&b) - expect * 0.1).abs() < 1e-9, "{rule:?}");
    }
}

#[test]
fn lookahead_and_no_decay_follow_their_definitions() {
    // f(w) = (w - 3)^2 by plain SGD (lr 0.1) in Lookahead(k 2, alpha 0.5);
    // by hand: two fast steps, then slow += 0.5 (fast - slow), fast = slow.
    let w = Tensor::from_slice(&[0.0f64]).set_requires_grad(true);
    let mut opt = Optimizer::new(
        Rule::Sgd {
            momentum: 0.0,
            weight_decay: 0.0,
        },
        vec![("w".into(), w.shallow_clone())],
    );
    opt.set_lookahead(Lookahead { k: 2, alpha: 0.5 });
    let (mut fast, mut slow) = (0.0f64, 0.0f64);
    for step in 1..=6 {
        opt.zero_grad();
        (&w - 3.0).square().sum(Kind::Double).backward();
        opt.step(0.1);
        fast -= 0.1 * 2.0 * (fast - 3.0);
        if step % 2 == 0 {
            slow += 0.5 * (fast - slow);
            fast = slow;
        }
        assert!((w.double_value(&[0]) - fast).abs() < 1e-12, "step {step}");
    }
    assert!(opt.state().contains_key("w.slow"));

    // Weight decay 0.1 on `a`, none on the bias: zero gradients, one
    // AdamW step of lr 1 shrinks only `a`.
    let a = Tensor::from_slice(&[2.0f64]).set_requires_grad(true);
    let b = Tensor::from_slice(&[2.0f64]).set_requires_grad(true);
    let mut opt = Optimizer::new(
        Rule::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
        },
        vec![
            ("fc.weight".into(), a.shallow_clone()),
            ("fc.bias".into(), b.shallow_clone()),
        ],
    );
    assert_eq!(opt.set_no_decay(is_norm_or_bias), 1);
    ((&a + &b) * 0.0).sum(Kind::Double).backward();
    opt.step(1.0);
    assert!((a.double_value(&[0]) - 1.8).abs() < 1e-12);
    assert_eq!(b.double_value(&[0]), 2.0);
    assert!(is_norm_or_bias("blocks.0.norm1.weight") && !is_norm_or_bias("fc.weight"));
    assert!(Lookahead { k: 0, alpha: 0.5 }.validate().is_err());
}

#[test]
fn clipping_by_value_and_by_norm() {
    let (mut opt, w) = with_grads(&[3.0, -0.1, -4.0]);
    let before = GradClip::Value(0.25).apply(&mut opt);
    assert!((before - (9.0f64 + 0.01 + 16.0).sqrt()).abs() < 1e-12);
    let g = Vec::<f64>::try_from(w.grad()).unwrap();
    assert_eq!(g, [0.25, -0.1, -0.25]);

    let (mut opt, w) = with_grads(&[3.0, 0.0, -4.0]);
    assert!((GradClip::Norm(1.0).apply(&mut opt) - 5.0).abs() < 1e-12);
    let g = Vec::<f64>::try_from(w.grad()).unwrap();
    // PyTorch's factor max_norm / (norm + 1e-6).
    let f = 1.0 / (5.0 + 1e-6);
    for (a, b) in g.iter().zip([3.0 * f, 0.0, -4.0 * f]) {
        assert!((a - b).abs() < 1e-15, "{a} vs {b}");
    }
    // Below the bound nothing changes.
    let (mut opt, w) = with_grads(&[0.3, 0.4]);
    GradClip::Norm(1.0).apply(&mut opt);
    assert_eq!(Vec::<f64>::try_from(w.grad()).unwrap(), [0.3, 0.4]);
    assert!(GradClip::Value(0.0).validate().is_err());
    assert!(GradClip::Norm(f64::NAN).validate().is_err());
}

fn quadratic_run(rule: Rule, steps: usize) -> Vec<f64> {
    // f(w) = sum((w - 3)^2), gradient 2(w - 3).
    let w = Tensor::from_slice(&[0.0f64, 1.0]).set_requires_grad(true);
    let mut opt = Optimizer::new(rule, vec![("w".into(), w.shallow_clone())]);
    for _ in 0..steps {
        opt.zero_grad();
        let loss = (&w - 3.0).square().sum(Kind::Double);
        loss.backward();
        opt.step(0.1);
    }
    Vec::<f64>::try_from(w.detach()).unwrap()
}

#[test]
fn sgd_momentum_matches_the_pytorch_recurrence() {
    // By hand: buf1 = g0; w1 = w0 - lr buf1; buf2 = 0.9 buf1 + g1; ...
    let (mut w, mut buf) = (0.0f64, None::<f64>);
    for _ in 0..3 {
        let g = 2.0 * (w - 3.0) + 0.01 * w;
        let b = buf.map_or(g, |b| 0.9 * b + g);
        buf = Some(b);
        w -= 0.1 * b;
    }
    let got = quadratic_run(
        Rule::Sgd {
            momentum: 0.9,
            weight_decay: 0.01,
        },
        3,
    );
    assert!((got[0] - w).abs() < 1e-12, "{} vs {w}", got[0]);
}

#[test]
fn adamw_matches_the_pytorch_recurrence() {
    let (b1, b2, eps, wd) = (0.9f64, 0.999f64, 1e-8, 0.01);
    let (mut w, mut m, mut v) = (0.0f64, 0.0f64, 0.0f64);
    for t in 1..=4 {
        let g = 2.0 * (w - 3.0);
        w *= 1.0 - 0.1 * wd;
        m = b1 * m + (1.0 - b1) * g;
        v = b2 * v + (1.0 - b2) * g * g;
        let mh = m / (1.0 - b1.powi(t));
        let denom = v.sqrt() / (1.0 - b2.powi(t)).sqrt() + eps;
        w -= 0.1 * mh / denom * 1.0;
        let _ = mh;
    }
    let got = quadratic_run(
        Rule::AdamW {
            beta1: b1,
            beta2: b2,
            eps,
            weight_decay: wd,
        },
        4,
    );
    assert!((got[0] - w).abs() < 1e-12, "{} vs {w}", got[0]);
}

#[test]
fn state_round_trips_and_resumes_identically() {
    let rule = Rule::Sgd {
        momentum: 0.9,
        weight_decay: 0.0,
    };
    let straight = quadratic_run(rule, 4);
    let w = Tensor::from_slice(&[0.0f64, 1.0]).set_requires_grad(true);
    let mut opt = Optimizer::new(rule, vec![("w".into(), w.shallow_clone())]);
    let step = |opt: &mut Optimizer| {
        opt.zero_grad();
        (&w - 3.0).square().sum(Kind::Double).backward();
        opt.step(0.1);
    };
    step(&mut opt);
    step(&mut opt);
    let saved: BTreeMap<String, Tensor> = opt
        .state()
        .into_iter()
        .map(|(k, v)| (k, v.copy()))
        .collect();
    let mut fresh = Optimizer::new(rule, vec![("w".into(), w.shallow_clone())]);
    fresh.load_state(saved).unwrap();
    step(&mut fresh);
    step(&mut fresh);
    assert_eq!(Vec::<f64>::try_from(w.detach()).unwrap(), straight);
    let bad = BTreeMap::from([
        ("steps".to_owned(), Tensor::from(1i64)),
        ("v.momentum".to_owned(), Tensor::from(0.0)),
    ]);
    let e = fresh.load_state(bad).unwrap_err();
    assert!(
        matches!(&e, Error::UnknownOptimizerKey { key } if key == "v.momentum"),
        "{e}"
    );
    assert!(e.to_string().contains("'v.momentum'"), "{e}");
}

/// Deterministic values of `shape` without libtorch's global generator
/// (tests run in parallel threads, and a seed set in one would move the
/// draws of another): a sine of the index, scaled by `phase`.
fn wave(shape: &[i64], phase: f64) -> Tensor {
    let n: i64 = shape.iter().product();
    (Tensor::arange(n, (Kind::Float, tch::Device::Cpu)) * 0.7 + phase)
        .sin()
        .view(shape)
}

/// Fused kernels against the per-tensor rule over several steps, float32,
/// with parameter groups (a scaled rate, a no-decay group), lookahead, a
/// channels-last convolution weight (it stays so) and a parameter without
/// a gradient:
/// the same parameters within float rounding, and the same state names.
#[test]
fn fused_updates_match_per_tensor_updates() {
    let rules = [
        Rule::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.05,
        },
        Rule::Sgd {
            momentum: 0.9,
            weight_decay: 1e-4,
        },
    ];
    for rule in rules {
        let run = |fused: bool| {
            let conv = cxr_nn::memory_format::channels_last(&wave(&[8, 4, 3, 3], 0.1));
            let params: Vec<(String, Tensor)> = vec![
                ("conv.weight".into(), conv),
                ("bn.bias".into(), wave(&[8], 0.2)),
                ("head.weight".into(), wave(&[3, 8], 0.3)),
                ("unused.weight".into(), wave(&[5], 0.4)),
            ]
            .into_iter()
            .map(|(n, t)| (n, t.set_requires_grad(true)))
            .collect();
            let shared = params
                .iter()
                .map(|(n, t)| (n.clone(), t.shallow_clone()))
                .collect();
            let mut opt = Optimizer::new(rule, shared);
            opt.set_fused(fused);
            assert_eq!(opt.is_fused(), fused);
            opt.set_no_decay(is_norm_or_bias);
            opt.set_lr_scale(|n| n.starts_with("head"), 10.0);
            opt.set_lookahead(Lookahead { k: 3, alpha: 0.5 });
            for step in 0..7 {
                opt.zero_grad();
                let x = wave(&[2, 4, 5, 5], step as f64);
                let y = x.conv2d(&params[0].1, Some(&params[1].1), [1, 1], [1, 1], [1, 1], 1);
                let pooled = y.mean_dim([2, 3].as_slice(), false, Kind::Float);
                // Bounded gradients, so SGD does not diverge.
                let loss =
                    pooled.matmul(&params[2].1.tr()).tanh().sum(Kind::Float) * (1.0 + step as f64);
                loss.backward();
                opt.step(0.01);
            }
            let state: Vec<String> = opt.state().keys().cloned().collect();
            let values: Vec<Tensor> = params.iter().map(|(_, p)| p.detach().copy()).collect();
            assert!(cxr_nn::memory_format::is_channels_last(&values[0]));
            (values, state)
        };
        let (fused, fused_state) = run(true);
        let (plain, plain_state) = run(false);
        assert_eq!(fused_state, plain_state, "{rule:?}");
        for (a, b) in fused.iter().zip(&plain) {
            let err =
                (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]).max(1e-12);
            assert!(err < 1e-5, "{rule:?}: {err}");
            assert!(bool::try_from(a.isfinite().all()).unwrap());
        }
    }
}

/// A checkpoint stores state in the default (NCHW) order; resuming a
/// channels-last parameter from it must continue bit for bit (the fused
/// kernels walk memory, so the state is moved to the parameter's layout).
#[test]
fn fused_state_restored_in_another_layout_resumes_bit_for_bit() {
    for rule in [
        Rule::Sgd {
            momentum: 0.9,
            weight_decay: 1e-4,
        },
        Rule::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.05,
        },
    ] {
        let start = || {
            cxr_nn::memory_format::channels_last(&wave(&[6, 3, 3, 3], 0.5)).set_requires_grad(true)
        };
        let step = |opt: &mut Optimizer, w: &Tensor, k: usize| {
            opt.zero_grad();
            // A gradient that is not symmetric in the layout's axes.
            let ramp = Tensor::arange(w.numel() as i64, (Kind::Float, tch::Device::Cpu))
                .view([6, 3, 3, 3]);
            (w * &ramp * (1.0 + k as f64))
                .tanh()
                .sum(Kind::Float)
                .backward();
            opt.step(0.01);
        };
        let w = start();
        let mut opt = Optimizer::new(rule, vec![("w".into(), w.shallow_clone())]);
        opt.set_fused(true);
        for k in 0..4 {
            step(&mut opt, &w, k);
        }
        let straight = w.detach().copy();

        let w = start();
        let mut opt = Optimizer::new(rule, vec![("w".into(), w.shallow_clone())]);
        opt.set_fused(true);
        step(&mut opt, &w, 0);
        step(&mut opt, &w, 1);
        // As a checkpoint writes and reads it: default-order copies.
        let saved = opt
            .state()
            .into_iter()
            .map(|(k, v)| (k, v.contiguous().copy()))
            .collect();
        let mut fresh = Optimizer::new(rule, vec![("w".into(), w.shallow_clone())]);
        fresh.set_fused(true);
        fresh.load_state(saved).unwrap();
        step(&mut fresh, &w, 2);
        step(&mut fresh, &w, 3);
        assert!(
            bool::try_from(w.detach().eq_tensor(&straight).all()).unwrap(),
            "{rule:?}: the resumed run differs"
        );
    }
}

/// The shim refuses state in another layout than its parameter instead of
/// pairing the wrong elements.
#[test]
fn the_fused_kernels_refuse_mismatched_layouts() {
    let p = cxr_nn::memory_format::channels_last(&wave(&[4, 2, 3, 3], 0.0));
    let g = p.ones_like();
    let nchw = Tensor::zeros([4, 2, 3, 3], (Kind::Float, tch::Device::Cpu));
    let e = cxr_nn::multi_tensor::fused_sgd_(&[p], &[g], &[nchw], 0.1, 0.9, 0.0, false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("momentum buffer 0 is not laid out as its parameter"),
        "{e}"
    );
}
