//! CLIP as CheXzero trains it (Tiu et al., 2022): image and impression
//! embeddings aligned by symmetric InfoNCE ([`crate::ssl::clip`]); writes
//! the whole model for `zero-shot` too.

use cxr_nn::registry::Normalization;
use cxr_nn::spec::ModelSpec;

use super::{AugmentRule, Defaults, Flags, Method, PositiveRule};
use crate::error::Error;
use crate::ssl::clip::{ClipObjective, ClipSettings};
use crate::ssl::{Positive, PretrainConfig};

/// CheXzero's pixel statistics (101.48761 and 83.43944 on the 0-255 scale).
pub const CHEXZERO: Normalization = Normalization {
    mean: [101.487_61 / 255.0; 3],
    std: [83.439_44 / 255.0; 3],
};

/// CLIP's own flags (the text tower's are shared: [`super::TextFlags`]).
#[derive(Debug, Clone, clap::Args)]
pub struct ClipFlags {
    /// clip: image transformer layers (4 tiny, 12 ViT-B/32).
    #[arg(long)]
    pub vision_layers: Option<usize>,
    /// clip: image token width, a multiple of 64 for more than one head (96 tiny, 768).
    #[arg(long)]
    pub vision_width: Option<i64>,
    /// clip: patch side (8 tiny, 32).
    #[arg(long)]
    pub patch_size: Option<i64>,
}

/// The CLIP settings: the default for the input size (tiny up to 128 px,
/// ViT-B/32 above) with the flags' overrides.
fn settings(flags: &Flags, size: i64) -> ClipSettings {
    let d = ClipSettings::for_size(size);
    let (c, t) = (&flags.clip, &flags.text);
    ClipSettings {
        embed_dim: t.embed_dim.unwrap_or(d.embed_dim),
        vision_layers: c.vision_layers.unwrap_or(d.vision_layers),
        vision_width: c.vision_width.unwrap_or(d.vision_width),
        vision_patch_size: c.patch_size.unwrap_or(d.vision_patch_size),
        context_length: t.context_length.unwrap_or(d.context_length),
        transformer_width: t.text_width.unwrap_or(d.transformer_width),
        transformer_layers: t.text_layers.unwrap_or(d.transformer_layers),
        vocab_size: t.vocab_size.unwrap_or(d.vocab_size),
        tokenizer: t.tokenizer.clone(),
        init_logit_scale: d.init_logit_scale,
    }
}

/// CLIP's own ViT at the input side.
fn model(flags: &Flags, size: i64) -> Result<(ModelSpec, String), Error> {
    let c = settings(flags, size);
    if size % c.vision_patch_size != 0 {
        return Err(Error::InvalidFlag(format!(
            "the input size {size} is not a multiple of the patch size {}",
            c.vision_patch_size
        )));
    }
    // The text vocabulary does not shape the image tower; the exported
    // clip.json records the tokenizer's real size.
    let spec = ModelSpec::clip_visual(c.config(size, c.vocab_size as i64), CHEXZERO);
    Ok((spec, "clip-visual".into()))
}

fn configure(flags: &Flags, spec: &ModelSpec, c: &mut PretrainConfig) -> Result<(), Error> {
    c.clip = Some(settings(flags, spec.preprocessing.size));
    Ok(())
}

/// CLIP.
pub(super) static METHOD: Method = Method {
    name: "clip",
    title: "CheXzero CLIP",
    about: "image-impression CLIP (the store needs a report column); \
            also writes the whole model for zero-shot",
    image_text: true,
    queue: false,
    reads: &[&[
        "tokenizer",
        "context-length",
        "vocab-size",
        "embed-dim",
        "text-layers",
        "text-width",
    ]],
    own_flags: <ClipFlags as clap::Args>::augment_args,
    defaults: Defaults {
        augment: AugmentRule::Never,
        ..Defaults::IMAGE
    },
    positive: PositiveRule {
        default: Positive::SameStudy,
        accepts: &[],
        refusal: "",
    },
    // The tiny CLIP of ClipSettings::for_size at 64 px, from scratch.
    recipe: &[&[("batch-size", "32"), ("lr", "5e-4")]],
    model,
    configure,
    build: |c, spec, store, device| {
        let train = store.split_indices(cxr_data::labels::Split::Train);
        let size = spec.preprocessing.size;
        Ok(Box::new(ClipObjective::new(
            store,
            &train,
            spec.preprocessing,
            &c.clip
                .clone()
                .unwrap_or_else(|| ClipSettings::for_size(size)),
            device,
            c.seed,
        )?))
    },
};
