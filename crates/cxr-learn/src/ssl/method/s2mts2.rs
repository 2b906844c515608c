//! S2MTS2 (Chen et al., 2021), stage A: MoCo with joint contrastive
//! learning over M key views of each image and an annealed weight
//! ([`crate::ssl::s2mts2`]).

use super::moco_cxr::{MOCO_READS, MOCO_RECIPE};
use super::resolve::scratch_model;
use super::{Defaults, Flags, Method, PositiveRule};
use crate::error::Error;
use crate::ssl::s2mts2::{S2mts2, S2mts2Settings};
use crate::ssl::{Positive, PretrainConfig};

/// S2MTS2's own flags.
#[derive(Debug, Clone, clap::Args)]
pub struct S2mts2Flags {
    /// s2mts2: key views per query, M (the reference's 2).
    #[arg(long)]
    pub keys: Option<usize>,
    /// s2mts2: JCL weight at the last epoch, ramped linearly from
    /// lambda/epochs (the reference's 2).
    #[arg(long)]
    pub jcl_lambda: Option<f64>,
    /// s2mts2: the reference code's projection head, its `classifier` layer
    /// applied twice (a quirk of the original; default MoCo v2's head).
    #[arg(long)]
    pub reference_head: bool,
}

fn configure(
    flags: &Flags,
    _: &cxr_nn::spec::ModelSpec,
    c: &mut PretrainConfig,
) -> Result<(), Error> {
    let f = &flags.s2mts2;
    let d = S2mts2Settings::default();
    c.s2mts2 = Some(S2mts2Settings {
        keys: f.keys.unwrap_or(d.keys),
        lambda: f.jcl_lambda.unwrap_or(d.lambda),
        reference_head: f.reference_head,
    });
    Ok(())
}

/// S2MTS2.
pub(super) static METHOD: Method = Method {
    name: "s2mts2",
    title: "S2MTS2",
    about: "MoCo with joint contrastive learning over --keys views of each image \
            (stage A; its backbone is densenet121-leaky)",
    image_text: false,
    queue: true,
    reads: MOCO_READS,
    own_flags: <S2mts2Flags as clap::Args>::augment_args,
    defaults: Defaults::IMAGE,
    positive: PositiveRule {
        default: Positive::SameImage,
        accepts: &[Positive::SameImage],
        refusal: "S2MTS2's keys are views of the query image; --positive {} is MedAug's",
    },
    // The phantom scale shares MoCo-CXR's CNN and views: S2MTS2 differs in
    // its objective, which is what the check compares.
    recipe: &[MOCO_RECIPE],
    model: scratch_model,
    configure,
    build: |c, spec, _, device| {
        Ok(Box::new(S2mts2::new(
            spec.clone(),
            c.moco.clone(),
            c.s2mts2.clone().unwrap_or_default(),
            device,
            c.seed,
        )?))
    },
};
