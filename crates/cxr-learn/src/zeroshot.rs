//! Zero-shot classification with an image-text model, as CheXzero does it.
//!
//! Each label has positive and negative prompts. Every prompt is embedded and
//! L2-normalised; several prompts on one side are averaged and normalised
//! again (CheXzero's `zeroshot_classifier` ensembling). An image's score for
//! a label is the softmax over the pair of cosine similarities
//! `(cos(img, pos), cos(img, neg))`, i.e. `sigmoid(cos_pos - cos_neg)`.
//! CheXzero (`zero_shot.py`, `run_softmax_eval`) takes that softmax over the
//! raw cosines, without the logit scale, so the probabilities stay near 0.5;
//! only their order matters for AUC, and we follow CheXzero exactly.
//!
//! Multi-class tasks use the classes' positive prompts only: a softmax over
//! `scale * cos(img, class)`, CLIP's zero-shot classifier, where the caller
//! passes the model's learned scale (`exp(logit_scale)`).
//!
//! SigLIP models ([`Scoring::Sigmoid`]) were trained with a sigmoid per
//! image-text pair, not a softmax: a label's probability is
//! `sigmoid(scale * cos(img, pos) + bias)` of its positive prompts alone
//! (negative prompts are not used), and classes compete through a softmax
//! over the same logits.

use std::collections::BTreeMap;

use cxr_nn::image_text::{ImageTextModel, Scoring};
use cxr_nn::text::TextTokenizer;
use serde::Deserialize;
use tch::{Kind, Tensor};

use crate::error::Error;

/// The prompts of one label.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct LabelPrompts {
    /// Texts describing the finding present.
    pub positive: Vec<String>,
    /// Texts describing it absent (unused for multi-class tasks).
    #[serde(default)]
    pub negative: Vec<String>,
}

/// Prompts for every label of a task, in the task's label order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptSet {
    /// `(label, prompts)` in the task's order.
    pub labels: Vec<(String, LabelPrompts)>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromptsFile {
    #[serde(default)]
    labels: BTreeMap<String, LabelPrompts>,
}

/// How a label is worded in prompts: lower-cased, underscores as spaces, and
/// the radiology phrase for names that are abbreviations of one (NIH's
/// "Effusion" is a pleural effusion in reports).
fn phrase(label: &str) -> String {
    let l = label.replace('_', " ").to_lowercase();
    match l.as_str() {
        "effusion" => "pleural effusion".into(),
        "edema" => "pulmonary edema".into(),
        "nodule" => "pulmonary nodule".into(),
        "mass" => "lung mass".into(),
        "pleural other" => "pleural abnormality".into(),
        _ => l,
    }
}

/// CheXzero's default pair (`"{label}"` against `"no {label}"`, lower-cased),
/// with wording for labels where that reads badly: "No Finding" is a normal
/// study, "Support Devices" are named by the devices reports mention.
pub fn default_prompts(label: &str) -> LabelPrompts {
    let p = phrase(label);
    let v = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect();
    match p.as_str() {
        "no finding" | "normal" => LabelPrompts {
            positive: v(&[
                "no acute cardiopulmonary process",
                "normal chest radiograph",
            ]),
            negative: v(&["acute cardiopulmonary process", "abnormal chest radiograph"]),
        },
        "support devices" | "support device" => LabelPrompts {
            positive: v(&[
                "support devices",
                "endotracheal tube",
                "nasogastric tube",
                "central venous catheter",
            ]),
            negative: v(&["no support devices"]),
        },
        _ => LabelPrompts {
            positive: vec![p.clone()],
            negative: vec![format!("no {p}")],
        },
    }
}

impl PromptSet {
    /// Default prompts for `labels`, overridden per label by `file` (TOML:
    /// `[labels."Pleural Effusion"]` with `positive = [...]` and
    /// `negative = [...]`). Label names match exactly.
    ///
    /// # Errors
    /// Malformed TOML, labels the task does not have (all named), or an
    /// empty prompt list (an empty negative list is allowed for multi-class).
    pub fn resolve(labels: &[String], file: Option<&str>, multiclass: bool) -> Result<Self, Error> {
        let mut given = match file {
            Some(text) => {
                toml::from_str::<PromptsFile>(text)
                    .map_err(Error::PromptsToml)?
                    .labels
            }
            None => BTreeMap::new(),
        };
        let unknown: Vec<&str> = given
            .keys()
            .filter(|k| !labels.contains(k))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(Error::UnknownPromptLabels {
                unknown: unknown.join(", "),
                known: labels.join(", "),
            });
        }
        let mut out = Vec::with_capacity(labels.len());
        for l in labels {
            let p = given.remove(l).unwrap_or_else(|| default_prompts(l));
            if p.positive.is_empty() {
                return Err(Error::EmptyPrompts {
                    label: l.clone(),
                    side: "positive",
                });
            }
            if p.negative.is_empty() && !multiclass {
                return Err(Error::EmptyPrompts {
                    label: l.clone(),
                    side: "negative",
                });
            }
            out.push((l.clone(), p));
        }
        Ok(Self { labels: out })
    }

    /// The resolved prompts in the file format [`resolve`](Self::resolve) reads.
    pub fn to_toml(&self) -> String {
        let mut s = String::new();
        for (label, p) in &self.labels {
            let list = |v: &[String]| {
                let quoted: Vec<String> = v
                    .iter()
                    .map(|t| toml::Value::String(t.clone()).to_string())
                    .collect();
                format!("[{}]", quoted.join(", "))
            };
            s.push_str(&format!(
                "[labels.{}]\npositive = {}\nnegative = {}\n\n",
                toml::Value::String(label.clone()),
                list(&p.positive),
                list(&p.negative)
            ));
        }
        s
    }
}

/// Rows scaled to unit L2 norm.
pub fn normalize_rows(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2, [-1], true)
}

/// One embedding `[e]` from the embeddings `[m, e]` of a label's prompts:
/// each normalised, averaged, normalised again.
pub fn ensemble(embeddings: &Tensor) -> Tensor {
    let mean = normalize_rows(embeddings).mean_dim(0, false, Kind::Float);
    &mean / mean.norm()
}

/// CheXzero's probabilities `[n, k]` from image embeddings `[n, e]` and
/// normalised positive and negative prompt embeddings `[k, e]`:
/// `softmax(cos_pos, cos_neg)[0]`, with no temperature.
pub fn pair_probabilities(images: &Tensor, positive: &Tensor, negative: &Tensor) -> Tensor {
    let i = normalize_rows(images);
    let pos = i.matmul(&positive.tr());
    let neg = i.matmul(&negative.tr());
    Tensor::stack(&[pos, neg], -1)
        .softmax(-1, Kind::Float)
        .select(-1, 0)
}

/// Class probabilities `[n, k]`: a softmax over `scale * cos(img, class)`.
pub fn multiclass_probabilities(images: &Tensor, classes: &Tensor, scale: f64) -> Tensor {
    (normalize_rows(images).matmul(&classes.tr()) * scale).softmax(-1, Kind::Float)
}

/// SigLIP's probabilities `[n, k]`: `sigmoid(scale * cos(img, pos) + bias)`.
pub fn sigmoid_probabilities(images: &Tensor, positive: &Tensor, scale: f64, bias: f64) -> Tensor {
    (normalize_rows(images).matmul(&positive.tr()) * scale + bias).sigmoid()
}

/// How a classifier turns similarities into probabilities, decided once
/// from the model's [`Scoring`] and the task.
#[derive(Debug)]
enum Rule {
    /// CheXzero: softmax over (positive, negative) cosines.
    Pair {
        /// Ensembled negative prompt embeddings `[k, e]`.
        negative: Tensor,
    },
    /// Classes compete: softmax over `scale * cos` (a bias shared by every
    /// class cancels in it).
    Classes {
        /// `exp(logit_scale)`.
        scale: f64,
    },
    /// SigLIP: `sigmoid(scale * cos(img, pos) + bias)` per label.
    Sigmoid {
        /// `exp(logit_scale)`.
        scale: f64,
        /// `logit_bias`.
        bias: f64,
    },
}

/// Prompt embeddings for a task, ready to score image embeddings.
#[derive(Debug)]
pub struct ZeroShotClassifier {
    positive: Tensor,
    rule: Rule,
    /// Prompts longer than the model's context (cut, end token kept).
    pub truncated: usize,
}

impl ZeroShotClassifier {
    /// Embeds `prompts` with `model` and `tokenizer`. Binary and multi-label
    /// tasks score positive against negative prompts (contrastive models) or
    /// each positive prompt by its sigmoid (SigLIP); `multiclass` tasks take
    /// a softmax over the classes' positive prompts scaled by the model's
    /// logit scale.
    ///
    /// # Errors
    /// [`Error::Tokenizer`] when the tokenizer fails.
    pub fn new(
        model: &dyn ImageTextModel,
        tokenizer: &TextTokenizer,
        prompts: &PromptSet,
        multiclass: bool,
    ) -> Result<Self, Error> {
        let ctx = model.context_length();
        let mut truncated = 0;
        let mut side = |pick: fn(&LabelPrompts) -> &Vec<String>| -> Result<Tensor, Error> {
            let mut rows = Vec::new();
            for (_, p) in &prompts.labels {
                let texts = pick(p);
                let (ids, t) = tokenizer
                    .encode_batch(texts, ctx)
                    .map_err(Error::Tokenizer)?;
                truncated += t;
                rows.push(ensemble(&model.encode_texts(&ids, texts.len())));
            }
            Ok(Tensor::stack(&rows, 0))
        };
        let positive = side(|p| &p.positive)?;
        let rule = match model.scoring() {
            Scoring::Softmax { scale } | Scoring::Sigmoid { scale, .. } if multiclass => {
                Rule::Classes { scale }
            }
            Scoring::Softmax { .. } => Rule::Pair {
                negative: side(|p| &p.negative)?,
            },
            Scoring::Sigmoid { scale, bias } => Rule::Sigmoid { scale, bias },
        };
        Ok(Self {
            positive,
            rule,
            truncated,
        })
    }

    /// Probabilities `[n, k]` of image embeddings `[n, e]`.
    pub fn score(&self, images: &Tensor) -> Tensor {
        match &self.rule {
            Rule::Pair { negative } => pair_probabilities(images, &self.positive, negative),
            Rule::Classes { scale } => multiclass_probabilities(images, &self.positive, *scale),
            Rule::Sigmoid { scale, bias } => {
                sigmoid_probabilities(images, &self.positive, *scale, *bias)
            }
        }
    }

    /// How the probabilities are computed, for a run's configuration.
    pub fn describe(&self) -> &'static str {
        match self.rule {
            Rule::Pair { .. } => {
                "softmax over (cos(image, positive), cos(image, negative)), no temperature (CheXzero)"
            }
            Rule::Classes { .. } => "softmax over exp(logit_scale) * cos(image, class prompts)",
            Rule::Sigmoid { .. } => {
                "sigmoid(exp(logit_scale) * cos(image, positive) + logit_bias) (SigLIP; negative prompts unused)"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BiomedCLIP's class probabilities equal open_clip's
    /// `softmax(logits_per_image)`, and its vocabulary passes the text
    /// tower's check. The committed tiny model names timm's ViT-B/16 but
    /// holds a two-layer trunk (a real timm-named trunk is megabytes), so
    /// the trunk's shape is set as cxr-nn's parity test sets it.
    #[test]
    fn biomedclip_scores_equal_the_reference_softmax() {
        use cxr_nn::arch::open_clip::{TimmVitConfig, read_dir};
        use cxr_nn::image_text::{ImageTextModel, OpenClipModel};
        let fixtures =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../cxr-nn/tests/fixtures");
        let mut read = read_dir(&fixtures.join("biomedclip/tiny")).unwrap();
        read.config.vision.trunk = TimmVitConfig {
            image_size: 32,
            patch_size: 8,
            embed_dim: 32,
            depth: 2,
            num_heads: 4,
            ..TimmVitConfig::vit_base_patch16_224()
        };
        let pre = cxr_nn::entry::Preprocessing::imagenet_224("test");
        let model = OpenClipModel::from_read(read, pre, tch::Device::Cpu).unwrap();
        let vocab = fixtures.join("biomedclip/tiny/vocab.txt");
        let tokenizer = TextTokenizer::open(&vocab).unwrap();
        model.check_tokenizer(&tokenizer).unwrap();
        let io = cxr_nn::checkpoint::load(&fixtures.join("biomedclip/io.safetensors")).unwrap();
        let ids = io.tensors["ids"].to_tch();
        let n = ids.size()[0];
        let flat: Vec<i64> = Vec::try_from(ids.flatten(0, -1)).unwrap();
        let texts = normalize_rows(&model.encode_texts(&flat, n as usize));
        let Scoring::Softmax { scale } = model.scoring() else {
            panic!("BiomedCLIP scores with a softmax");
        };
        let images = io.tensors["image_embedding"].to_tch();
        let ours = multiclass_probabilities(&images, &texts, scale);
        let reference = io.tensors["logits_per_image"]
            .to_tch()
            .softmax(-1, Kind::Float);
        let err = (ours - &reference).abs().max().double_value(&[])
            / reference.abs().max().double_value(&[]);
        assert!(err < 1e-5, "relative error {err}");
    }

    /// SigLIP's zero-shot probabilities equal the reference's
    /// `sigmoid(logits_per_image)`: the scale (an exponential) and the bias
    /// as loaded from a transformers `save_pretrained` directory, the
    /// formula, the normalisation. The images' embeddings are the
    /// reference's (cxr-nn's parity test shows ours equal them); the texts'
    /// are ours.
    #[test]
    fn siglip_scores_equal_the_reference_sigmoid() {
        use cxr_nn::image_text::{ImageTextModel, SiglipModel};
        use cxr_nn::model_dir::{DirFormat, ModelDir};
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../cxr-nn/tests/fixtures/siglip/tiny");
        let dir = ModelDir::open(&path, DirFormat::HuggingFace).unwrap();
        let pre = cxr_nn::entry::Preprocessing::imagenet_224("test");
        let model = SiglipModel::from_dir(&dir, pre, tch::Device::Cpu).unwrap();
        let io = cxr_nn::checkpoint::load(&path.join("reference.safetensors")).unwrap();
        let ids = io.tensors["input_ids"].to_tch();
        let (n, ctx) = ids.size2().unwrap();
        let flat: Vec<i64> = Vec::try_from(ids.flatten(0, -1)).unwrap();
        let texts = normalize_rows(&model.encode_texts(&flat, n as usize));
        assert_eq!(texts.size()[0], n);
        assert_eq!(model.context_length() as i64, ctx);
        let Scoring::Sigmoid { scale, bias } = model.scoring() else {
            panic!("SigLIP scores with a sigmoid");
        };
        let images = io.tensors["image_features_32"].to_tch();
        let ours = sigmoid_probabilities(&images, &texts, scale, bias);
        let reference = io.tensors["logits_per_image"].to_tch().sigmoid();
        let err = (ours - &reference).abs().max().double_value(&[])
            / reference.abs().max().double_value(&[]);
        assert!(err < 1e-5, "relative error {err}");
    }

    fn t(v: &[f32], rows: i64) -> Tensor {
        Tensor::from_slice(v).view([rows, -1])
    }

    #[test]
    fn pair_probability_is_softmax_of_raw_cosines() {
        // Image along x; positive along x, negative at 90 degrees: cosines 1 and 0.
        let img = t(&[2.0, 0.0, 0.0, 3.0], 2);
        let pos = t(&[1.0, 0.0], 1);
        let neg = t(&[0.0, 1.0], 1);
        let p = Vec::<f32>::try_from(pair_probabilities(&img, &pos, &neg).flatten(0, -1)).unwrap();
        let e = 1f64.exp();
        assert!((f64::from(p[0]) - e / (e + 1.0)).abs() < 1e-6);
        assert!((f64::from(p[1]) - 1.0 / (1.0 + e)).abs() < 1e-6);
    }

    #[test]
    fn ensembles_average_unit_vectors_then_renormalise() {
        // Unequal norms must not weigh: (1,0) and (0,5) give (1,1)/sqrt(2).
        let e = ensemble(&t(&[1.0, 0.0, 0.0, 5.0], 2));
        let v = Vec::<f32>::try_from(e).unwrap();
        let h = std::f32::consts::FRAC_1_SQRT_2;
        assert!((v[0] - h).abs() < 1e-6 && (v[1] - h).abs() < 1e-6);
    }

    #[test]
    fn multiclass_uses_the_scale() {
        let img = t(&[1.0, 0.0], 1);
        let classes = t(&[1.0, 0.0, 0.0, 1.0], 2);
        let p = Vec::<f32>::try_from(multiclass_probabilities(&img, &classes, 2.0).flatten(0, -1))
            .unwrap();
        let e2 = 2f64.exp();
        assert!((f64::from(p[0]) - e2 / (e2 + 1.0)).abs() < 1e-6);
        assert!((p[0] + p[1] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn defaults_and_file_overrides() {
        let labels: Vec<String> = [
            "Pleural Effusion",
            "Effusion",
            "No Finding",
            "Support Devices",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let file = r#"
[labels."Pleural Effusion"]
positive = ["fluid"]
negative = ["no fluid", "dry"]
"#;
        let set = PromptSet::resolve(&labels, Some(file), false).unwrap();
        assert_eq!(set.labels[0].1.negative, vec!["no fluid", "dry"]);
        assert_eq!(set.labels[1].1.positive, vec!["pleural effusion"]);
        assert_eq!(set.labels[1].1.negative, vec!["no pleural effusion"]);
        assert!(set.labels[2].1.positive[0].contains("no acute"));
        assert!(set.labels[3].1.positive.len() > 1);
        // The written form reads back to the same prompts.
        let again = PromptSet::resolve(&labels, Some(&set.to_toml()), false).unwrap();
        assert_eq!(again, set);
    }

    #[test]
    fn unknown_labels_and_empty_lists_are_errors() {
        let labels = vec!["Cardiomegaly".to_owned()];
        let e = PromptSet::resolve(
            &labels,
            Some("[labels.Cardiomegally]\npositive=[\"x\"]\nnegative=[\"y\"]\n[labels.Foo]\npositive=[\"x\"]\n"),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("Cardiomegally") && e.contains("Foo"), "{e}");
        let e = PromptSet::resolve(
            &labels,
            Some("[labels.Cardiomegaly]\npositive=[\"x\"]\n"),
            false,
        )
        .unwrap_err();
        assert!(matches!(
            e,
            Error::EmptyPrompts {
                side: "negative",
                ..
            }
        ));
        assert!(
            PromptSet::resolve(
                &labels,
                Some("[labels.Cardiomegaly]\npositive=[\"x\"]\n"),
                true
            )
            .is_ok()
        );
    }
}
