//! Training a tiny CLIP on a phantom store's (image, impression) pairs, for
//! the zero-shot end-to-end test.

use std::path::{Path, PathBuf};

use cxr_data::labels::Split;
use cxr_data::store::read::Store;
use cxr_learn::contrastive::{MAX_LOGIT_SCALE, clip_loss};
use cxr_learn::ssl::clip::center_outputs;
use cxr_nn::arch::clip::ClipConfig;
use cxr_nn::image_text::ClipModel;
use cxr_nn::registry::{Normalization, Preprocessing};
use cxr_nn::text::{TextTokenizer, impression};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use tch::nn::OptimizerConfig;
use tch::{Device, Kind, Tensor};

/// Knobs of the tiny model's training.
#[derive(Debug, Clone, Copy)]
pub struct TrainConfig {
    /// Torch and sampling seed.
    pub seed: u64,
    /// Optimiser steps.
    pub steps: usize,
    /// Pairs per step.
    pub batch: usize,
    /// AdamW learning rate.
    pub lr: f64,
}

/// Trains a tiny CLIP (ViT 64 px / patch 16, one layer per tower) with the
/// symmetric InfoNCE on the train split's (image, impression) pairs, and
/// saves it as `dir/clip.safetensors` with its sidecar and
/// `dir/tokenizer.json`. Returns the model path.
pub fn train_tiny_clip(store_dir: &Path, dir: &Path, cfg: TrainConfig) -> PathBuf {
    // Training here reseeds libtorch's one generator: a turn of its own.
    let _turn = crate::common::one_process();
    // One intra-op thread: on a shared two-core machine, libtorch's spinning
    // worker threads make small ops many times slower.
    // Restored at the end: the process is shared with the other tests.
    let threads = tch::get_num_threads();
    tch::set_num_threads(1);
    let store = Store::open(store_dir).unwrap();
    let train = store.split_indices(Split::Train);
    let texts: Vec<String> = train
        .iter()
        .map(|&i| {
            impression(
                store.rows[i]
                    .report
                    .as_deref()
                    .expect("phantom rows carry reports"),
            )
        })
        .collect();
    let tokenizer = TextTokenizer::train(&texts, 400).unwrap();
    let tok_path = dir.join("tokenizer.json");
    tokenizer.save(&tok_path).unwrap();
    let [h, w] = store.meta.image_size.map(|d| d as usize);
    let config = ClipConfig {
        embed_dim: 32,
        image_resolution: h as i64,
        vision_layers: 1,
        vision_width: 64,
        vision_patch_size: 16,
        context_length: 32,
        vocab_size: tokenizer.vocab_size() as i64,
        transformer_width: 64,
        transformer_layers: 1,
    };
    let pre = Preprocessing {
        size: h as i64,
        channels: 3,
        normalization: Normalization {
            mean: [0.4; 3],
            std: [0.25; 3],
        },
        resize: "none (store size)",
        internal_resize: None,
        crop_from: None,
    };
    tch::manual_seed(cfg.seed as i64);
    let model = ClipModel::new(config.clone(), pre, Device::Cpu);
    let mut pixels = Vec::with_capacity(train.len() * h * w);
    for &i in &train {
        pixels.extend_from_slice(store.image(i).unwrap());
    }
    let images = model.preprocess(&pixels, train.len(), h, w);
    let (ids, _) = tokenizer
        .encode_batch(&texts, config.context_length as usize)
        .unwrap();
    let ids = Tensor::from_slice(&ids).view([train.len() as i64, config.context_length]);
    let sample = Tensor::arange(train.len().min(256) as i64, (Kind::Int64, Device::Cpu));
    center_outputs(
        &model,
        &images.index_select(0, &sample),
        &ids.index_select(0, &sample),
    );
    // After centering, random alignments at CLIP's initial scale (14.3) give
    // a loss far above ln B, which the optimiser escapes by collapsing every
    // embedding onto one direction; a small starting scale avoids that.
    tch::no_grad(|| {
        let _ = model.clip.text.logit_scale.shallow_clone().fill_(2f64.ln());
    });
    let mut opt = tch::nn::AdamW::default()
        .wd(0.01)
        .build(model.var_store(), cfg.lr)
        .unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut order: Vec<i64> = (0..train.len() as i64).collect();
    let mut pos = order.len();
    for _ in 0..cfg.steps {
        if pos + cfg.batch > order.len() {
            order.shuffle(&mut rng);
            pos = 0;
        }
        let b = Tensor::from_slice(&order[pos..pos + cfg.batch]);
        pos += cfg.batch;
        let img = model.image_embeddings(&images.index_select(0, &b));
        let txt = model.text_embeddings(&ids.index_select(0, &b));
        opt.backward_step(&clip_loss(&img, &txt, &model.clip.text.logit_scale));
        tch::no_grad(|| {
            let _ = model
                .clip
                .text
                .logit_scale
                .shallow_clone()
                .clamp_max_(MAX_LOGIT_SCALE);
        });
    }
    let path = dir.join("clip.safetensors");
    model.save(&path, Some(&tok_path)).unwrap();
    tch::set_num_threads(threads);
    path
}
