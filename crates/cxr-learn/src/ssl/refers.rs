//! REFERS (docs/ssl-methods.md (REFERS)): three views of a study through one ViT,
//! a gated fusion of their patch tokens as the memory of a one-layer
//! caption decoder that writes the report (findings + impression), and a
//! per-sample InfoNCE between the views' concatenated class tokens and a
//! BERT encoding of the same report. `L = L_cap + L_con`.
//!
//! Views: view 0 is the query image, views 1 and 2 are drawn with
//! replacement from its study by the run's `same-study` positive rule, so
//! a one-image study gives three differently augmented copies, as in the
//! reference.
//!
//! Flips: the data loader's flip does not say whether it flipped, so the
//! run turns it off and this objective flips instead. Per sample it draws
//! one decision from the step seed with probability
//! [`RefersSettings::flip`], mirrors all three views together and uses the
//! caption with "left" and "right" swapped ([`caption::swap_left_right`]),
//! so image and text always agree (the reference flips views
//! independently and only view 1's flip reaches the caption, docs/ssl-methods.md (Pitfalls)).
//!
//! Text: the decoder reads a BPE trained on the train captions (standing
//! in for REFERS' SentencePiece model; padding is id 0 and is
//! ignored by the loss, as in REFERS), the BERT branch a WordPiece trained
//! on the same captions; both cut at [`RefersSettings::max_len`] tokens,
//! counted in the run's `text` record. All branches share one learning
//! rate (the reference gives BERT a tenth of the others').
//!
//! From-scratch adjustments (the reference starts from ImageNet weights):
//! the mean class token and mean report vector are centred at
//! initialisation, and the fusion gates are parametrised so Adam moves
//! them slowly ([`super::fusion`]). The exported encoder is the ViT in its
//! own names; its probe feature is the class token after the encoder norm.

pub mod caption;
pub mod loss;

use std::collections::{BTreeMap, HashMap};

use cxr_data::store::read::Store;
use cxr_nn::arch::bert::{Bert, BertConfig};
use cxr_nn::arch::decoder::{CaptionDecoder, DecoderConfig};
use cxr_nn::arch::vit::{Vit, VitConfig};
use cxr_nn::backbone::Architecture;
use cxr_nn::spec::ModelSpec;
use cxr_nn::text::TextTokenizer;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};
use tch::nn::{self, Module, VarStore};
use tch::{Device, Kind, Tensor};

use super::blocks::{gather_with_grad, l2_normalize, load_state_of, monitors, share_of_global};
use super::fusion::{ViewFusion, gate_monitors};
use super::text_side::{Pooling, TextTower};
use super::{Objective, Views};
use crate::dist::DataParallel;
use crate::error::Error;

/// Views per study (REFERS draws three).
pub const VIEWS: usize = 3;
/// Rows sampled for the data-dependent centring.
const CENTER_SAMPLE: usize = 256;

/// REFERS' loss weights and text-side shapes. The contrastive dimension is
/// three times the ViT's width, the decoder's memory projection maps the
/// ViT's width to the decoder's.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RefersSettings {
    /// Weight of the image->text term (1 − λ for text->image).
    pub lambda: f64,
    /// Temperature of the cosine similarities.
    pub temperature: f64,
    /// The reference's stop-gradient on the text->image term
    /// (`refers_detach_t2i`, docs/ssl-methods.md (Pitfalls)); off: both terms train.
    pub detach_t2i: bool,
    /// Probability of the paired image + caption flip.
    pub flip: f64,
    /// Longest caption in tokens, start and end included (both tokenizers).
    pub max_len: usize,
    /// Size of the decoder's trained BPE.
    pub caption_vocab: usize,
    /// Size of the BERT branch's trained WordPiece.
    pub bert_vocab: usize,
    /// Decoder width, heads, feed-forward width and layers.
    pub decoder: (i64, i64, i64, usize),
    /// BERT width, heads, feed-forward width and layers.
    pub bert: (i64, i64, i64, usize),
    /// Dropout of the ViT while pretraining (REFERS: 0.1). From random
    /// weights at phantom scale the contrastive term stays at chance with
    /// it: the class token's image-dependent part is small and dropout's
    /// noise drowns it.
    #[serde(default = "vit_dropout")]
    pub dropout: f64,
    /// How the report vector is read off BERT (REFERS: its pooler).
    #[serde(default = "pooler")]
    pub pooling: Pooling,
}

impl RefersSettings {
    /// The tiny configuration of docs/ssl-methods.md (Phantom-scale configurations): decoder 1 layer, width 128, 4 heads,
    /// FFN 512; BERT 2 layers, width 128, 2 heads, FFN 512; captions of at
    /// most 48 tokens; λ 0.75, τ 0.1.
    pub fn tiny() -> Self {
        Self {
            lambda: 0.75,
            temperature: 0.1,
            detach_t2i: false,
            flip: 0.5,
            max_len: 48,
            caption_vocab: 1000,
            bert_vocab: 600,
            decoder: (128, 4, 512, 1),
            bert: (128, 2, 512, 2),
            pooling: Pooling::Pooler,
            dropout: cxr_nn::arch::vit::DROPOUT,
        }
    }

    /// REFERS' own shapes: decoder width 1024, 16 heads, FFN 4096;
    /// BERT-base; captions of 100 tokens; 10k-id vocabularies.
    pub fn base() -> Self {
        Self {
            max_len: 100,
            caption_vocab: 10_000,
            bert_vocab: 10_000,
            decoder: (1024, 16, 4096, 1),
            bert: (768, 12, 3072, 12),
            ..Self::tiny()
        }
    }

    /// Tiny for ViTs up to 128 wide, REFERS' shapes above.
    pub fn for_width(width: i64) -> Self {
        if width <= 128 {
            Self::tiny()
        } else {
            Self::base()
        }
    }
}

fn vit_dropout() -> f64 {
    cxr_nn::arch::vit::DROPOUT
}

fn pooler() -> Pooling {
    Pooling::Pooler
}

/// Token ids of both tokenizers for every caption, plain and swapped.
#[derive(Debug)]
struct Captions {
    /// Decoder ids `[rows · 2, max_len]`; row `2p + f` is caption p
    /// swapped when f = 1.
    decoder: Tensor,
    /// BERT ids, laid out the same way.
    bert: Tensor,
    decoder_pad: i64,
    bert_pad: i64,
}

/// The REFERS objective.
#[derive(Debug)]
pub struct RefersObjective {
    vs: VarStore,
    vit: Vit,
    fusion: ViewFusion,
    decoder: CaptionDecoder,
    bert: Bert,
    text_projection: nn::Linear,
    captions: Captions,
    /// Store row -> caption index.
    position: HashMap<usize, i64>,
    rows: Vec<usize>,
    settings: RefersSettings,
    summary: Value,
    /// The process group the global batch is split over.
    dp: DataParallel,
}

fn encode(
    tok: &TextTokenizer,
    texts: &[String],
    len: usize,
    device: Device,
) -> Result<(Tensor, usize), Error> {
    let (flat, truncated) = tok.encode_batch(texts, len).map_err(Error::Tokenizer)?;
    let ids = Tensor::from_slice(&flat)
        .view([texts.len() as i64, len as i64])
        .to_device(device);
    Ok((ids, truncated))
}

impl RefersObjective {
    /// Captions every `train` row having a report, trains both tokenizers
    /// on them and builds the model from `seed`.
    ///
    /// # Errors
    /// A backbone that is not a ViT, a store without reports, or a
    /// tokenizer failure.
    pub fn new(
        store: &Store,
        train: &[usize],
        spec: &ModelSpec,
        settings: &RefersSettings,
        device: Device,
        seed: u64,
    ) -> Result<Self, Error> {
        let Architecture::Vit(vit_config) = &spec.architecture else {
            return Err(Error::MethodBackbone {
                method: "refers",
                requirement: "trains a ViT (use --backbone vit-tiny or vit-b16)",
                backbone: spec.name.clone(),
            });
        };
        store.require_reports().map_err(|cause| Error::NoReports {
            method: "refers".into(),
            cause: Box::new(cause),
        })?;
        let rows: Vec<usize> = train
            .iter()
            .copied()
            .filter(|&i| store.rows[i].report.is_some())
            .collect();
        if rows.is_empty() {
            return Err(Error::NoTrainingReports {
                method: "refers",
                images: train.len(),
                column: "report",
            });
        }
        let plain: Vec<String> = rows
            .iter()
            .map(|&i| caption::caption(store.rows[i].report.as_deref().unwrap_or_default()))
            .collect();
        let swapped: Vec<String> = plain.iter().map(|c| caption::swap_left_right(c)).collect();
        let dec_tok =
            TextTokenizer::train(&plain, settings.caption_vocab).map_err(Error::Tokenizer)?;
        let bert_tok = TextTokenizer::train_wordpiece(&plain, settings.bert_vocab)
            .map_err(Error::Tokenizer)?;
        let len = settings.max_len;
        let (dec_plain, truncated) = encode(&dec_tok, &plain, len, device)?;
        let (bert_plain, bert_truncated) = encode(&bert_tok, &plain, len, device)?;
        let pair = |a: Tensor, b: Tensor| Tensor::stack(&[a, b], 1).view([-1, len as i64]);
        let decoder_ids = pair(dec_plain, encode(&dec_tok, &swapped, len, device)?.0);
        let bert_ids = pair(bert_plain, encode(&bert_tok, &swapped, len, device)?.0);
        let decoder_pad = i64::from(dec_tok.pad_id);
        let majority =
            loss::majority_frequency(&decoder_ids.narrow(1, 1, len as i64 - 1), decoder_pad);
        tch::manual_seed(seed as i64);
        let vs = VarStore::new(device);
        let root = vs.root();
        let vit = Vit::new(
            &root,
            &VitConfig {
                num_classes: None,
                ..vit_config.clone()
            },
        )
        .with_dropout(settings.dropout);
        let width = vit_config.hidden;
        let fusion = ViewFusion::new(&(&root / "fusion"), VIEWS, width);
        let (dw, dh, df, dl) = settings.decoder;
        let decoder = CaptionDecoder::new(
            &(&root / "textual"),
            &DecoderConfig {
                vocab_size: dec_tok.vocab_size() as i64,
                hidden: dw,
                layers: dl,
                heads: dh,
                ffn: df,
                max_len: settings.max_len as i64,
                memory_dim: width,
                pad_id: decoder_pad,
            },
        );
        let (bw, bh, bf, bl) = settings.bert;
        let bert = Bert::new(
            &(&root / "bert"),
            &BertConfig {
                vocab_size: bert_tok.vocab_size() as i64,
                hidden: bw,
                layers: bl,
                heads: bh,
                intermediate: bf,
                max_positions: settings.max_len as i64,
                type_vocab_size: 2,
            },
        );
        let text_projection = nn::linear(
            &root / "text_projection",
            bw,
            VIEWS as i64 * width,
            Default::default(),
        );
        let position = rows
            .iter()
            .enumerate()
            .map(|(p, &i)| (i, p as i64))
            .collect();
        let mut objective = Self {
            vs,
            vit,
            fusion,
            decoder,
            bert,
            text_projection,
            captions: Captions {
                decoder: decoder_ids,
                bert: bert_ids,
                decoder_pad,
                bert_pad: i64::from(bert_tok.pad_id),
            },
            position,
            rows,
            settings: settings.clone(),
            summary: Value::Null,
            dp: DataParallel::single(),
        };
        objective.center(store, spec)?;
        let summary = json!({
            "event": "text", "pairs": objective.rows.len(),
            "skipped_without_report": train.len() - objective.rows.len(),
            "truncated_captions": truncated, "truncated_bert_captions": bert_truncated,
            "caption_length": settings.max_len, "caption_vocab_size": dec_tok.vocab_size(),
            "bert_vocab_size": bert_tok.vocab_size(), "majority_token_frequency": majority,
        });
        objective.summary = summary;
        Ok(objective)
    }

    /// Shifts the ViT's final LayerNorm bias and the text projection's bias
    /// so the mean class token and the mean report vector of a sample are
    /// zero (the lesson of the tiny CLIP, [`super::clip::center_outputs`]):
    /// from random weights every film embeds in nearly one direction and
    /// every report in another, and the cosine InfoNCE sits at ln B until
    /// that shared component is unlearned.
    fn center(&self, store: &Store, spec: &ModelSpec) -> Result<(), Error> {
        let sample = &self.rows[..self.rows.len().min(CENTER_SAMPLE)];
        let mut pixels = Vec::new();
        for &i in sample {
            let img = store.image(i).ok_or(Error::StoreImage { row: i })?;
            pixels.extend_from_slice(img);
        }
        let [h, w] = store.meta.image_size.map(|d| d as usize);
        let device = self.captions.decoder.device();
        let x = spec
            .preprocessing
            .input(&pixels, sample.len(), h, w, device);
        let at = Tensor::arange(sample.len() as i64, (Kind::Int64, device)) * 2;
        let ids = self.captions.bert.index_select(0, &at);
        let mask = ids.ne(self.captions.bert_pad).to_kind(Kind::Int64);
        let vars = self.vs.variables();
        tch::no_grad(|| {
            let g = self
                .vit
                .features_t(&x, false)
                .mean_dim(0, false, Kind::Float);
            let u = self
                .text_projection
                .forward(&TextTower::pool(
                    &self.bert.forward_t(&ids, &mask, false),
                    &mask,
                    self.settings.pooling,
                ))
                .mean_dim(0, false, Kind::Float);
            let _ = vars["transformer.encoder.encoder_norm.bias"]
                .shallow_clone()
                .g_sub_(&g);
            let _ = vars["text_projection.bias"].shallow_clone().g_sub_(&u);
        });
        Ok(())
    }

    /// Flip decisions of this rank's `n` samples of a step: its slice of
    /// the global batch's draws, so a data-parallel run flips what one
    /// process would.
    fn flips(&self, n: usize, step_seed: u64) -> Vec<bool> {
        let mut rng = ChaCha8Rng::seed_from_u64(step_seed ^ 0x666c_6970);
        let p = self.settings.flip.clamp(0.0, 1.0);
        let global: Vec<bool> = (0..n * self.dp.world_size())
            .map(|_| rng.random_bool(p))
            .collect();
        global[self.dp.rank() * n..(self.dp.rank() + 1) * n].to_vec()
    }
}

impl Objective for RefersObjective {
    fn views(&self) -> usize {
        VIEWS
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

    /// The global batch's losses: the class tokens and report vectors are
    /// gathered for the contrastive term (its share returned), and the
    /// caption cross-entropy is this rank's token sum over the global
    /// token count.
    fn join(&mut self, dp: &DataParallel) -> bool {
        self.dp = dp.clone();
        true
    }

    fn is_text_encoder(&self, name: &str) -> bool {
        name.starts_with("bert.")
    }

    fn trainable(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn loss(
        &mut self,
        views: &Views,
        step_seed: u64,
        train: bool,
    ) -> Result<(Tensor, Map<String, Value>), Error> {
        let n = views.queries().len();
        let device = views.xq().device();
        let flips = if train {
            self.flips(n, step_seed)
        } else {
            vec![false; n]
        };
        let flip_mask = Tensor::from_slice(&flips)
            .to_device(device)
            .view([-1, 1, 1, 1]);
        let x: Vec<Tensor> = views
            .x
            .iter()
            .map(|x| x.flip([3]).where_self(&flip_mask, x))
            .collect();
        let tokens = self
            .vit
            .tokens_t(&Tensor::cat(&x, 0), train)
            .chunk(VIEWS as i64, 0);
        let cls: Vec<Tensor> = tokens.iter().map(|t| t.select(1, 0)).collect();
        let patches: Vec<Tensor> = tokens
            .iter()
            .zip(&cls)
            .map(|(t, g)| t.narrow(1, 1, t.size()[1] - 1) + g.unsqueeze(1))
            .collect();
        let fused = self.fusion.forward(&patches);

        let at: Vec<i64> = views
            .queries()
            .iter()
            .zip(&flips)
            .map(|(i, &f)| 2 * self.position[i] + i64::from(f))
            .collect();
        let at = Tensor::from_slice(&at).to_device(device);
        let ids = self.captions.decoder.index_select(0, &at);
        let len = ids.size()[1];
        let logits = self
            .decoder
            .forward_t(&ids.narrow(1, 0, len - 1), &fused.memory, train);
        let targets = ids.narrow(1, 1, len - 1);
        let pad = self.captions.decoder_pad;
        let l_cap = if self.dp.world_size() == 1 {
            loss::token_cross_entropy(&logits, &targets, pad)
        } else {
            let local = targets.ne(pad).sum(Kind::Double).double_value(&[]);
            let all = self.dp.sum(&[local])?[0];
            loss::token_cross_entropy_sum(&logits, &targets, pad) / all.max(1.0)
        };
        let (token_acc, majority) = loss::token_accuracy(&logits, &targets, pad);

        let bert_ids = self.captions.bert.index_select(0, &at);
        let mask = bert_ids.ne(self.captions.bert_pad).to_kind(Kind::Int64);
        let u = self.text_projection.forward(&TextTower::pool(
            &self.bert.forward_t(&bert_ids, &mask, train),
            &mask,
            self.settings.pooling,
        ));
        let v = gather_with_grad(&self.dp, &Tensor::cat(&cls, 1))?;
        let u = gather_with_grad(&self.dp, &u)?;
        let s = &self.settings;
        let mut con = loss::contrastive(&v, &u, s.temperature, s.lambda, s.detach_t2i);
        // Logged: the global batch's values, whichever rank logs.
        let con_value = con.loss.double_value(&[]);
        con.loss = share_of_global(con.loss, self.dp.world_size());
        let cap_value = match self.dp.world_size() {
            1 => l_cap.double_value(&[]),
            _ => self.dp.sum(&[l_cap.double_value(&[])])?[0],
        };

        let g = gate_monitors(&fused.gates);
        let (zi, zt) = (l2_normalize(&v.detach()), l2_normalize(&u.detach()));
        let m = monitors(&zi, &zt);
        let duplicates = tch::no_grad(|| {
            let same = bert_ids
                .unsqueeze(1)
                .eq_tensor(&bert_ids.unsqueeze(0))
                .all_dim(2, false);
            let pairs = same.sum(Kind::Double).double_value(&[]) - n as f64;
            pairs / (n * (n - 1)).max(1) as f64
        });
        let fields = json!({
            "loss_caption": cap_value, "loss_contrastive": con_value,
            "caption_accuracy": token_acc, "majority_token_frequency": majority,
            "accuracy": con.accuracy, "gate_mean": g.mean, "gate_view_min": g.view_min,
            "gate_view_max": g.view_max, "gate_sample_std": g.sample_std,
            "embedding_std": m.embedding_std,
            "text_embedding_std": monitors(&zt, &zi).embedding_std,
            "alignment": m.alignment, "uniformity": m.uniformity,
            "duplicate_texts": duplicates,
            "flipped": flips.iter().filter(|&&f| f).count(),
        });
        Ok((
            l_cap + con.loss,
            fields.as_object().cloned().unwrap_or_default(),
        ))
    }

    fn state(&self) -> BTreeMap<String, Tensor> {
        self.vs.variables().into_iter().collect()
    }

    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) -> Result<(), Error> {
        load_state_of(state, &[("", &self.vs)])
    }

    /// The ViT under its own names (`transformer.*`), as a `vit-*` backbone
    /// loads it.
    fn encoder(&self) -> BTreeMap<String, Tensor> {
        self.vs
            .variables()
            .into_iter()
            .filter(|(n, _)| n.starts_with("transformer."))
            .collect()
    }
}
