//! ConVIRT (Zhang et al., 2022): an image and one sentence of its report,
//! a BERT text tower and asymmetric bidirectional InfoNCE
//! ([`crate::ssl::convirt`]).

use cxr_data::augment::Augment;
use cxr_nn::spec::ModelSpec;

use super::resolve::scratch_model;
use super::{
    AugmentRule, BACKBONE, Defaults, Flags, Method, PositiveRule, TEXT_TOWER, bert_settings,
    text_pooling,
};
use crate::error::Error;
use crate::schedule::Shape;
use crate::ssl::convirt::{Convirt, ConvirtSettings};
use crate::ssl::{Positive, PretrainConfig};

/// ConVIRT's own flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ConvirtFlags {
    /// convirt: weight λ of the image->text term (1 - λ for text->image; paper 0.75).
    #[arg(long)]
    pub convirt_lambda: Option<f64>,
    /// convirt: temperature τ of both directions (0.1).
    #[arg(long)]
    pub convirt_temperature: Option<f64>,
    /// convirt: the reference code's default without --biloss: the
    /// image->text term alone.
    #[arg(long)]
    pub image_to_text_only: bool,
    /// convirt: leave pairs with identical sentences out of each other's
    /// negatives (off in the paper; the duplicate rate is logged either way).
    #[arg(long)]
    pub mask_duplicate_texts: bool,
}

/// ConVIRT's augmentation (docs/ssl-methods.md (ConVIRT)) as far as
/// [`Augment`] expresses it: a square crop of side fraction 0.6-1 (area
/// 0.36-1, drawn uniform in area rather than in side), rotation ±20° (no
/// translation or scaling), flip 0.5 with the text unchanged, brightness
/// and contrast 0.4, blur with p 0.95 and σ 0.1-3 px scaled from 224 px to
/// the input size. The reference applies crop, affine and jitter each with
/// p 0.95; here always.
pub fn augment(size: usize) -> Augment {
    let px = size as f32 / 224.0;
    Augment {
        crop_scale: (0.36, 1.0),
        crop_ratio: (1.0, 1.0),
        rotation_deg: 20.0,
        brightness: 0.4,
        contrast: 0.4,
        hflip: 0.5,
        blur_sigma: (0.1 * px, 3.0 * px),
        blur_p: 0.95,
        ..Augment::none(size, size)
    }
}

/// ConVIRT's settings: the defaults for the input size with the flags'
/// overrides.
fn configure(flags: &Flags, spec: &ModelSpec, c: &mut PretrainConfig) -> Result<(), Error> {
    let f = &flags.convirt;
    let d = ConvirtSettings::for_size(spec.preprocessing.size);
    c.convirt = Some(ConvirtSettings {
        text: bert_settings(flags, d.text.clone()),
        pooling: text_pooling(flags, d.pooling),
        dim: flags.text.embed_dim.unwrap_or(d.dim),
        temperature: f.convirt_temperature.unwrap_or(d.temperature),
        lambda: f.convirt_lambda.unwrap_or(d.lambda),
        image_to_text_only: f.image_to_text_only,
        mask_duplicate_texts: f.mask_duplicate_texts,
    });
    Ok(())
}

/// ConVIRT.
pub(super) static METHOD: Method = Method {
    name: "convirt",
    title: "ConVIRT",
    about: "image + one findings/impression sentence, BERT, asymmetric bidirectional InfoNCE",
    image_text: true,
    queue: false,
    reads: &[BACKBONE, TEXT_TOWER, &["embed-dim", "text-pooling"]],
    own_flags: <ConvirtFlags as clap::Args>::augment_args,
    // The paper's plateau schedule, validated every 5,000 steps as its
    // code, down to a floor of 1e-8.
    defaults: Defaults {
        schedule: Shape::Plateau,
        val_every: 5000,
        min_lr: 1e-8,
        augment: AugmentRule::Own(augment),
        ..Defaults::IMAGE
    },
    positive: PositiveRule {
        default: Positive::SameStudy,
        accepts: &[],
        refusal: "",
    },
    // Cosine like the rest: a few hundred steps are too short for the
    // plateau schedule. Its augmentation (crops down to 36 % of the area,
    // ±20°, jitter, blur) leaves 64 px phantom views whose report sentence
    // is no longer predictable: with it, image->text accuracy stays at
    // chance.
    recipe: &[&[
        ("backbone", "resnet18-w16-gn"),
        ("batch-size", "32"),
        ("lr", "1e-3"),
        ("schedule", "cosine"),
        ("no-augment", ""),
    ]],
    model: scratch_model,
    configure,
    build: |c, spec, store, device| {
        let train = store.split_indices(cxr_data::labels::Split::Train);
        Ok(Box::new(Convirt::new(
            store,
            &train,
            spec,
            &c.convirt
                .clone()
                .unwrap_or_else(|| ConvirtSettings::for_size(spec.preprocessing.size)),
            device,
            c.seed,
        )?))
    },
};
