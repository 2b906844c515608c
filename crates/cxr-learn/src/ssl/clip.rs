//! CheXzero-style CLIP pretraining (docs/ssl-methods.md (CLIP)): an image tower and
//! a text tower trained with the symmetric in-batch InfoNCE on (image,
//! impression) pairs, the learnable logit scale clamped at ln 100.
//!
//! Both towers start from random weights here (the original starts from
//! OpenAI's CLIP), so two lessons of the tiny zero-shot model apply: the
//! final LayerNorm biases are shifted so the mean embedding of a sample is
//! zero, and the logit scale starts small (see [`ClipSettings`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use cxr_data::store::read::Store;
use cxr_nn::arch::clip::ClipConfig;
use cxr_nn::image_text::ClipModel;
use cxr_nn::registry::Preprocessing;
use cxr_nn::text::{TextTokenizer, impression};
use serde_json::{Map, Value, json};
use tch::{Device, Kind, Tensor};

use super::blocks::{
    gather_with_grad, l2_normalize, load_state_of, monitors, on_rank_zero, share_of_global,
};
use super::{Objective, Views};
use crate::contrastive::{MAX_LOGIT_SCALE, clip_loss};
use crate::dist::DataParallel;
use crate::error::Error;

/// CLIP shape and text settings of a run. The image resolution is the
/// run's input size; the vocabulary size is the tokenizer's.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClipSettings {
    /// Joint embedding size.
    pub embed_dim: i64,
    /// Image transformer layers.
    pub vision_layers: usize,
    /// Image token width (heads = width / 64).
    pub vision_width: i64,
    /// Patch side.
    pub vision_patch_size: i64,
    /// Text context length; longer impressions are truncated (counted).
    pub context_length: i64,
    /// Text token width (heads = width / 64).
    pub transformer_width: i64,
    /// Text transformer layers.
    pub transformer_layers: usize,
    /// Vocabulary size of a tokenizer trained on the train impressions.
    pub vocab_size: usize,
    /// An existing tokenizer file instead of training one.
    pub tokenizer: Option<PathBuf>,
    /// Initial logit scale (log of the multiplier).
    pub init_logit_scale: f64,
}

impl ClipSettings {
    /// The tiny configuration of docs/ssl-methods.md (Phantom-scale configurations): ViT patch 8 width 96
    /// depth 4, text 2 layers width 128 context 32, embedding 64, a BPE of
    /// 400 ids from the corpus. The scale starts at ln 2: from random
    /// weights, CLIP's ln(1/0.07) makes the optimiser collapse every
    /// embedding onto one direction before it aligns any pair.
    pub fn tiny() -> Self {
        Self {
            embed_dim: 64,
            vision_layers: 4,
            vision_width: 96,
            vision_patch_size: 8,
            context_length: 32,
            transformer_width: 128,
            transformer_layers: 2,
            vocab_size: 400,
            tokenizer: None,
            init_logit_scale: 2f64.ln(),
        }
    }

    /// OpenAI ViT-B/32 (CheXzero's shape) with its ln(1/0.07) initial
    /// scale; the trained vocabulary is 8,192 ids because training a
    /// 49,408-id BPE on impressions alone would mostly memorise whole
    /// reports (pass OpenAI's merges with `tokenizer` for the original).
    pub fn vit_b32() -> Self {
        let c = ClipConfig::vit_b32();
        Self {
            embed_dim: c.embed_dim,
            vision_layers: c.vision_layers,
            vision_width: c.vision_width,
            vision_patch_size: c.vision_patch_size,
            context_length: c.context_length,
            transformer_width: c.transformer_width,
            transformer_layers: c.transformer_layers,
            vocab_size: 8192,
            tokenizer: None,
            init_logit_scale: (1.0f64 / 0.07).ln(),
        }
    }

    /// The default for `size`-pixel inputs: tiny up to 128 px, ViT-B/32
    /// above (its 224-px shape is what CheXzero trains).
    pub fn for_size(size: i64) -> Self {
        if size <= 128 {
            Self::tiny()
        } else {
            Self::vit_b32()
        }
    }

    /// The model shape at `image_resolution` with `vocab_size` ids.
    pub fn config(&self, image_resolution: i64, vocab_size: i64) -> ClipConfig {
        ClipConfig {
            embed_dim: self.embed_dim,
            image_resolution,
            vision_layers: self.vision_layers,
            vision_width: self.vision_width,
            vision_patch_size: self.vision_patch_size,
            context_length: self.context_length,
            vocab_size,
            transformer_width: self.transformer_width,
            transformer_layers: self.transformer_layers,
        }
    }
}

/// Rows sampled for the data-dependent initialisation.
const CENTER_SAMPLE: usize = 256;

/// The CLIP objective: both towers, the tokenizer and every train row's
/// token ids.
#[derive(Debug)]
pub struct ClipObjective {
    model: ClipModel,
    tokenizer: TextTokenizer,
    /// Token ids `[rows, context]` on the model's device.
    ids: Tensor,
    /// Store row -> row of `ids`.
    position: HashMap<usize, i64>,
    summary: Value,
    /// The process group the global batch is gathered over.
    dp: DataParallel,
}

impl ClipObjective {
    /// Pairs every `train` row having a report with its impression, trains
    /// (or opens) the tokenizer, builds the model from `seed` and centres
    /// its outputs on a sample of the pairs.
    ///
    /// # Errors
    /// A store without a `report` column, a train split with no reports, an
    /// unusable tokenizer, or an unreadable image.
    pub fn new(
        store: &Store,
        train: &[usize],
        preprocessing: Preprocessing,
        settings: &ClipSettings,
        device: Device,
        seed: u64,
    ) -> Result<Self, Error> {
        store.require_reports().map_err(|cause| Error::NoReports {
            method: "clip".into(),
            cause: Box::new(cause),
        })?;
        let rows: Vec<usize> = train
            .iter()
            .copied()
            .filter(|&i| store.rows[i].report.is_some())
            .collect();
        let skipped = train.len() - rows.len();
        if rows.is_empty() {
            return Err(Error::NoTrainingReports {
                method: "clip",
                images: train.len(),
                column: "report",
            });
        }
        let texts: Vec<String> = rows
            .iter()
            .map(|&i| impression(store.rows[i].report.as_deref().unwrap_or_default()))
            .collect();
        let tokenizer = match &settings.tokenizer {
            Some(path) => TextTokenizer::open(path).map_err(Error::Tokenizer)?,
            None => TextTokenizer::train(&texts, settings.vocab_size).map_err(Error::Tokenizer)?,
        };
        if !tokenizer.end_is_largest() {
            return Err(Error::ClipTokenizerEnd);
        }
        let ctx = settings.context_length;
        let (flat, truncated) = tokenizer
            .encode_batch(&texts, ctx as usize)
            .map_err(Error::Tokenizer)?;
        let ids = Tensor::from_slice(&flat)
            .view([rows.len() as i64, ctx])
            .to_device(device);
        let position = rows
            .iter()
            .enumerate()
            .map(|(p, &i)| (i, p as i64))
            .collect();
        let config = settings.config(preprocessing.size, tokenizer.vocab_size() as i64);
        tch::manual_seed(seed as i64);
        let model = ClipModel::new(config, preprocessing, device);
        let sample = &rows[..rows.len().min(CENTER_SAMPLE)];
        let s = preprocessing.size as usize;
        let mut pixels = Vec::with_capacity(sample.len() * s * s);
        for &i in sample {
            let img = store.image(i).ok_or(Error::StoreImage { row: i })?;
            pixels.extend_from_slice(img);
        }
        let [h, w] = store.meta.image_size.map(|d| d as usize);
        let images = model.preprocess(&pixels, sample.len(), h, w);
        center_outputs(&model, &images, &ids.narrow(0, 0, sample.len() as i64));
        tch::no_grad(|| {
            let _ = model
                .clip
                .text
                .logit_scale
                .shallow_clone()
                .fill_(settings.init_logit_scale);
        });
        let summary = json!({
            "event": "text", "pairs": rows.len(), "skipped_without_report": skipped,
            "truncated_reports": truncated, "context_length": ctx,
            "vocab_size": tokenizer.vocab_size(),
        });
        Ok(Self {
            model,
            tokenizer,
            ids,
            position,
            summary,
            dp: DataParallel::single(),
        })
    }

    fn scale(&self) -> &Tensor {
        &self.model.clip.text.logit_scale
    }
}

/// Shifts the final LayerNorm biases of both towers so the mean projected
/// embedding of the sample is zero. Chest films share most of their
/// content, so at random init every image (and every impression) embeds in
/// nearly the same direction and InfoNCE sits at ln B for hundreds of
/// steps; centring leaves only the differences, which the loss can align
/// from the start.
pub fn center_outputs(model: &ClipModel, images: &Tensor, ids: &Tensor) {
    let vars = model.var_store().variables();
    tch::no_grad(|| {
        let towers = [
            (
                model.image_embeddings(images),
                "visual.ln_post.bias",
                "visual.proj",
            ),
            (
                model.text_embeddings(ids),
                "ln_final.bias",
                "text_projection",
            ),
        ];
        for (out, bias, proj) in towers {
            let mean = out.mean_dim(0, false, Kind::Float);
            // The minimum-norm bias shift d with proj^T d = mean.
            let d = vars[proj]
                .pinverse(1e-10)
                .tr()
                .matmul(&mean.unsqueeze(1))
                .squeeze_dim(1);
            let _ = vars[bias].shallow_clone().g_sub_(&d);
        }
    });
}

impl Objective for ClipObjective {
    fn views(&self) -> usize {
        1
    }

    fn rows(&self, candidates: Vec<usize>) -> Vec<usize> {
        candidates
            .into_iter()
            .filter(|r| self.position.contains_key(r))
            .collect()
    }

    fn summary(&self) -> Option<Value> {
        Some(self.summary.clone())
    }

    fn trainable(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self
            .model
            .var_store()
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Contrasts the whole global batch: both towers' embeddings are
    /// gathered from every rank, so each rank sees the single-process
    /// negatives.
    fn join(&mut self, dp: &DataParallel) -> bool {
        self.dp = dp.clone();
        true
    }

    fn loss(
        &mut self,
        views: &Views,
        _step_seed: u64,
        // Nothing differs: the towers have neither dropout nor batch norm.
        _train: bool,
    ) -> Result<(Tensor, Map<String, Value>), Error> {
        let at: Vec<i64> = views.queries().iter().map(|i| self.position[i]).collect();
        let at = Tensor::from_slice(&at).to_device(self.ids.device());
        let img = self.model.image_embeddings(views.xq());
        let txt = self.model.text_embeddings(&self.ids.index_select(0, &at));
        let loss = clip_loss(
            &gather_with_grad(&self.dp, &img)?,
            &gather_with_grad(&self.dp, &txt)?,
            &on_rank_zero(&self.dp, self.scale()),
        );
        let loss = share_of_global(loss, self.dp.world_size());
        let (zi, zt) = (l2_normalize(&img.detach()), l2_normalize(&txt.detach()));
        let n = zi.size()[0];
        let hits = zi
            .matmul(&zt.tr())
            .argmax(1, false)
            .eq_tensor(&Tensor::arange(n, (Kind::Int64, zi.device())))
            .to_kind(Kind::Double)
            .mean(Kind::Double)
            .double_value(&[]);
        let m = monitors(&zi, &zt);
        let fields = json!({
            "accuracy": hits, "embedding_std": m.embedding_std,
            "text_embedding_std": monitors(&zt, &zi).embedding_std,
            "alignment": m.alignment, "uniformity": m.uniformity,
            "logit_scale": self.scale().double_value(&[]),
        });
        Ok((loss, fields.as_object().cloned().unwrap_or_default()))
    }

    /// Clamps the scale after the update, as the clamp in docs/ssl-methods.md (CLIP) means it.
    fn after_step(&mut self) -> Result<(), Error> {
        tch::no_grad(|| {
            let _ = self.scale().shallow_clone().clamp_max_(MAX_LOGIT_SCALE);
        });
        Ok(())
    }

    /// Every variable of both towers (the logit scale included).
    fn state(&self) -> BTreeMap<String, Tensor> {
        self.model.var_store().variables().into_iter().collect()
    }

    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) -> Result<(), Error> {
        load_state_of(state, &[("", self.model.var_store())])
    }

    /// The image tower under `visual.`, as a `clip-visual` backbone names it.
    fn encoder(&self) -> BTreeMap<String, Tensor> {
        self.model
            .var_store()
            .variables()
            .into_iter()
            .filter(|(n, _)| n.starts_with("visual."))
            .collect()
    }

    /// `clip.safetensors` + `clip.json` (both towers, loadable by
    /// `zero-shot`) and the `tokenizer.json` they name.
    fn export_extra(&self, dir: &Path) -> Result<(), Error> {
        let tok = dir.join("tokenizer.json");
        self.tokenizer.save(&tok).map_err(|cause| Error::Export {
            path: tok.clone(),
            cause: Box::new(cause),
        })?;
        let path = dir.join("clip.safetensors");
        self.model
            .save(&path, Some(&tok))
            .map_err(|cause| Error::Export {
                path,
                cause: Box::new(cause),
            })
    }
}
