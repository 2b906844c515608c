//! REFERS (Zhou et al., 2022): three views of a study through a ViT, gated
//! view fusion, report generation and image-report InfoNCE
//! ([`crate::ssl::refers`]).

use cxr_nn::spec::ModelSpec;

use super::resolve::scratch_model;
use super::{AugmentRule, BACKBONE, Defaults, Flags, Method, PositiveRule, VIEWS, text_pooling};
use crate::error::Error;
use crate::ssl::refers::{RefersObjective, RefersSettings};
use crate::ssl::{Positive, PretrainConfig};

/// REFERS' own flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RefersFlags {
    /// refers: weight λ of the image->report term (1 - λ for report->image).
    #[arg(long)]
    pub refers_lambda: Option<f64>,
    /// refers: temperature of the cosine similarities (0.1).
    #[arg(long)]
    pub refers_temperature: Option<f64>,
    /// refers: the reference code's stop-gradient on the report->image term
    /// (its value counts, its gradient does not); default: both terms train.
    #[arg(long)]
    pub refers_detach_t2i: bool,
    /// refers: dropout of the ViT while pretraining (0.1, REFERS'). From
    /// random weights at small scale 0 lets the contrastive term leave
    /// chance; the phantom recipe uses it.
    #[arg(long)]
    pub vit_dropout: Option<f64>,
}

/// REFERS' settings: the defaults for the ViT's width with the flags'
/// overrides (`--hflip` is the paired image + caption flip, done by the
/// objective).
fn configure(flags: &Flags, spec: &ModelSpec, c: &mut PretrainConfig) -> Result<(), Error> {
    let (f, t) = (&flags.refers, &flags.text);
    let d = RefersSettings::for_width(spec.feature_dim());
    c.refers = Some(RefersSettings {
        lambda: f.refers_lambda.unwrap_or(d.lambda),
        temperature: f.refers_temperature.unwrap_or(d.temperature),
        detach_t2i: f.refers_detach_t2i,
        flip: f64::from(flags.views.hflip),
        max_len: t.context_length.map_or(d.max_len, |n| n.max(0) as usize),
        caption_vocab: t.vocab_size.unwrap_or(d.caption_vocab),
        pooling: text_pooling(flags, d.pooling),
        dropout: match f.vit_dropout {
            Some(p) if !(0.0..1.0).contains(&p) => {
                return Err(Error::InvalidFlag(format!(
                    "--vit-dropout must be in [0, 1), got {p}"
                )));
            }
            Some(p) => p,
            None => d.dropout,
        },
        ..d
    });
    Ok(())
}

/// REFERS.
pub(super) static METHOD: Method = Method {
    name: "refers",
    title: "REFERS",
    about: "three views of a study + report generation + image-report InfoNCE \
            (needs reports, study ids and a ViT backbone such as vit-tiny)",
    image_text: true,
    queue: false,
    reads: &[
        BACKBONE,
        VIEWS,
        &["text-lr", "context-length", "vocab-size", "text-pooling"],
    ],
    own_flags: <RefersFlags as clap::Args>::augment_args,
    defaults: Defaults {
        augment: AugmentRule::FlagsFlipInObjective,
        ..Defaults::IMAGE
    },
    positive: PositiveRule {
        default: Positive::SameStudy,
        accepts: &[Positive::SameStudy],
        refusal: "REFERS draws its three views from the query's study; --positive {} does not apply",
    },
    // With the ViT's dropout the contrastive term stays at chance for a
    // dozen phantom epochs (the class token's image-dependent part is
    // small from random weights, and dropout noise drowns it).
    recipe: &[&[
        ("backbone", "vit-tiny"),
        ("batch-size", "16"),
        ("lr", "5e-4"),
        ("vit-dropout", "0"),
    ]],
    model: scratch_model,
    configure,
    build: |c, spec, store, device| {
        let train = store.split_indices(cxr_data::labels::Split::Train);
        Ok(Box::new(RefersObjective::new(
            store,
            &train,
            spec,
            &c.refers
                .clone()
                .unwrap_or_else(|| RefersSettings::for_width(spec.feature_dim())),
            device,
            c.seed,
        )?))
    },
};
