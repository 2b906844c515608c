//! GLoRIA (Huang et al., 2021): ResNet layer-3 regions and report words,
//! the word-region attention local loss plus the global loss
//! ([`crate::ssl::gloria`]).

use cxr_data::augment::Augment;
use cxr_nn::registry::Normalization;
use cxr_nn::spec::ModelSpec;

use super::resolve::scratch_with;
use super::{
    AugmentRule, BACKBONE, Defaults, Flags, Method, PositiveRule, TEXT_TOWER, bert_settings,
};
use crate::error::Error;
use crate::schedule::Shape;
use crate::ssl::gloria::{Gloria, GloriaSettings};
use crate::ssl::gloria_attention::Gammas;
use crate::ssl::{Positive, PretrainConfig};

/// GLoRIA's own flags.
#[derive(Debug, Clone, clap::Args)]
pub struct GloriaFlags {
    /// gloria: γ1,γ2,γ3 (attention, word aggregation, logit scale; 4,5,10).
    #[arg(long, value_delimiter = ',')]
    pub gloria_gammas: Option<Vec<f64>>,
    /// gloria: the paper's single softmax over regions instead of the
    /// code's softmax over words then over regions.
    #[arg(long)]
    pub single_softmax: bool,
    /// gloria: side the images are resized to inside the model during
    /// pretraining (the reference: 299 from 224; default: 299 above 128 px,
    /// none below).
    #[arg(long)]
    pub gloria_upsample: Option<i64>,
    /// gloria: lesion masks for the attention check at the end of the run:
    /// a CSV with `path` (an image's source path, as in the store) and
    /// `lesion_mask` (a PNG relative to the CSV, empty for none), such as a
    /// phantom's `ground_truth.csv`. For each lesion word ("opacity",
    /// "consolidation", "nodule", "mass", ...) of the validation split's
    /// impressions, is the region it attends to most on its lesion? Logged
    /// and written to `localisation.json` with the chance rate.
    #[arg(long, value_name = "CSV")]
    pub lesion_masks: Option<std::path::PathBuf>,
}

/// GLoRIA's "half" normalisation (mean 0.5, std 0.5).
pub const HALF: Normalization = Normalization {
    mean: [0.5; 3],
    std: [0.5; 3],
};

/// GLoRIA's augmentation (docs/ssl-methods.md (GLoRIA)): a random square
/// crop of 224/256 of the side at a random position, resized back to the
/// input size (the reference crops 224 of 256 and upsamples to 299 in the
/// model); no flip, affine or jitter.
pub fn augment(size: usize) -> Augment {
    let side: f32 = 224.0 / 256.0;
    Augment {
        crop_scale: (side * side, side * side),
        crop_ratio: (1.0, 1.0),
        ..Augment::none(size, size)
    }
}

/// GLoRIA's settings: the defaults for the input size with the flags'
/// overrides.
fn configure(flags: &Flags, spec: &ModelSpec, c: &mut PretrainConfig) -> Result<(), Error> {
    let f = &flags.gloria;
    let d = GloriaSettings::for_size(spec.preprocessing.size);
    let gammas = match f.gloria_gammas.as_deref() {
        None => d.gammas,
        Some(&[attention, words, logits]) => Gammas {
            attention,
            words,
            logits,
        },
        Some(_) => {
            return Err(Error::InvalidFlag(
                "--gloria-gammas takes three values, γ1,γ2,γ3".into(),
            ));
        }
    };
    c.gloria = Some(GloriaSettings {
        text: bert_settings(flags, d.text.clone()),
        gammas,
        single_softmax: f.single_softmax,
        upsample: f.gloria_upsample.or(d.upsample),
        lesion_masks: match &f.lesion_masks {
            Some(p) => Some(p.canonicalize().map_err(|cause| Error::FlagFile {
                flag: "lesion-masks",
                path: p.clone(),
                cause,
            })?),
            None => None,
        },
        ..d
    });
    Ok(())
}

/// GLoRIA.
pub(super) static METHOD: Method = Method {
    name: "gloria",
    title: "GLoRIA",
    about: "image regions + impression words, local attention and global InfoNCE \
            (a ResNet backbone)",
    image_text: true,
    queue: false,
    reads: &[BACKBONE, TEXT_TOWER],
    own_flags: <GloriaFlags as clap::Args>::augment_args,
    // Its config's Adam β1 0.5; the paper's plateau schedule, validated at
    // each epoch's end, stopping after 10 evaluations without a better loss
    // as its code.
    defaults: Defaults {
        adam_beta1: 0.5,
        schedule: Shape::Plateau,
        early_stop_on_plateau: Some(10),
        augment: AugmentRule::Own(augment),
        ..Defaults::IMAGE
    },
    positive: PositiveRule {
        default: Positive::SameStudy,
        accepts: &[],
        refusal: "",
    },
    // Cosine: a few hundred steps are too short for the plateau schedule.
    recipe: &[&[
        ("backbone", "resnet18-w16-gn"),
        ("batch-size", "32"),
        ("lr", "1e-3"),
        ("schedule", "cosine"),
    ]],
    model: |flags, size| scratch_with(flags, size, Some(HALF)),
    configure,
    build: |c, spec, store, device| {
        let train = store.split_indices(cxr_data::labels::Split::Train);
        Ok(Box::new(Gloria::new(
            store,
            &train,
            spec,
            &c.gloria
                .clone()
                .unwrap_or_else(|| GloriaSettings::for_size(spec.preprocessing.size)),
            device,
            c.seed,
        )?))
    },
};
