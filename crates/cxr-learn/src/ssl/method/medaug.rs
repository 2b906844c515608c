//! MedAug (Vu et al., 2021): MoCo-CXR's engine with positives drawn from
//! other images of the same patient (by default of the same study, its
//! paper's best strategy), which the loop's [`crate::ssl::PositiveSampler`]
//! draws.

use super::moco_cxr::{MOCO_READS, build_moco, no_flags};
use super::resolve::scratch_model;
use super::{Defaults, Method, PositiveRule};
use crate::ssl::Positive;

/// The phantom-scale recipe: MoCo-CXR's, with positives from the same
/// patient (the phantom's studies hold one image each).
const RECIPE: &[(&str, &str)] = &[
    ("backbone", "resnet18-w16-gn"),
    ("batch-size", "32"),
    ("lr", "1e-3"),
    ("queue", "1024"),
    ("key-momentum", "0.99"),
    ("crop-scale", "0.3,1"),
    ("brightness", "0.4"),
    ("contrast", "0.4"),
    ("blur-p", "0.5"),
    ("positive", "same-patient"),
];

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
    recipe: RECIPE,
    model: scratch_model,
    configure: |_, _, _| Ok(()),
    build: build_moco,
};

#[cfg(test)]
mod tests {
    #[test]
    fn the_recipe_is_moco_cxrs_with_patient_positives() {
        let mut own = super::RECIPE.to_vec();
        assert_eq!(own.pop(), Some(("positive", "same-patient")));
        assert_eq!(own, super::super::moco_cxr::MOCO_RECIPE);
    }
}
