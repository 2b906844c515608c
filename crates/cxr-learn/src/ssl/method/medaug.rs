//! MedAug (Vu et al., 2021): MoCo-CXR's engine with positives drawn from
//! other images of the same patient (by default of the same study, its
//! paper's best strategy), which the loop's [`crate::ssl::PositiveSampler`]
//! draws.

use super::moco_cxr::{MOCO_READS, MOCO_RECIPE, build_moco, no_flags};
use super::resolve::scratch_model;
use super::{Defaults, Method, PositiveRule};
use crate::ssl::Positive;

/// MedAug.
pub(super) static METHOD: Method = Method {
    name: "medaug",
    title: "MedAug",
    about: "positives from another image of the same patient and study (--positive)",
    image_text: false,
    queue: true,
    reads: MOCO_READS,
    own_flags: no_flags,
    defaults: Defaults::IMAGE,
    positive: PositiveRule {
        default: Positive::SameStudy,
        accepts: &[
            Positive::SameStudy,
            Positive::SamePatient,
            Positive::SameImage,
        ],
        refusal: "",
    },
    // MoCo-CXR's phantom-scale recipe, with positives from the same
    // patient (the phantom's studies hold one image each).
    recipe: &[MOCO_RECIPE, &[("positive", "same-patient")]],
    model: scratch_model,
    configure: |_, _, _| Ok(()),
    build: build_moco,
};
