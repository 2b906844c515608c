//! The ResNet-18 releases of MoCo-CXR and MedAug against PyTorch: DDP MoCo
//! dicts around torchvision's resnet18 (query and key encoders with the MLP
//! head, queue, optimizer state; `scripts/fixtures/moco_resnet18.py`) import
//! strictly, and their features equal torchvision's pooled layer4 at the
//! entries' preprocessing. The ResNet-50 entries point at these.

use crate::common;

use common::{fixture, max_rel_err};
use cxr_nn::checkpoint::{Checkpoint, Container, load};
use cxr_nn::encoder::Encoder;
use cxr_nn::import::{ImportError, import};
use cxr_nn::registry;
use cxr_nn::spec::ModelSpec;
use tch::Device;

/// (entry, release file, container the generator wrote it in).
const RELEASES: [(&str, &str, Container); 2] = [
    ("mococxr-resnet18", "moco-cxr_resnet18", Container::TorchZip),
    (
        "medaug-resnet18",
        "medaug_mimic-cxr_resnet18",
        Container::TorchLegacy,
    ),
];

fn release(file: &str) -> Checkpoint {
    load(&fixture("moco", &format!("{file}.pth.tar"))).unwrap()
}

#[test]
fn resnet18_releases_give_pytorchs_features() {
    for (name, file, container) in RELEASES {
        let entry = registry::find(name).unwrap();
        assert_eq!(entry.feature_dim(), 512, "{name}");
        assert!(entry.checkpoint_file.starts_with(file), "{name}");
        let ck = release(file);
        assert_eq!(ck.container, container, "{file}");
        let imported = import(&entry, &ck).unwrap();

        // Only the query encoder's trunk is kept; the rest is named.
        let trunk = imported.tensors.len();
        assert_eq!(
            trunk, 100,
            "{name}: torchvision resnet18 without fc or counters"
        );
        assert_eq!(imported.ignored.len() + trunk, ck.tensors.len(), "{name}");
        let reason = |key: &str| {
            imported
                .ignored
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, r)| *r)
                .unwrap_or_else(|| panic!("{name}: {key} not ignored"))
        };
        assert_eq!(
            reason("state_dict.module.encoder_k.layer4.1.conv2.weight"),
            "MoCo key (momentum) encoder"
        );
        assert_eq!(reason("state_dict.module.queue"), "MoCo negative queue");
        assert!(reason("state_dict.module.encoder_q.fc.0.weight").starts_with("classifier head"));

        // The generator's preprocessing is the entry's.
        let io = load(&fixture("moco", &format!("{file}_io.pt")))
            .unwrap()
            .tensors;
        let p = entry.preprocessing;
        assert_eq!(io["size"].to_f64(), [p.size as f64], "{name}");
        assert_eq!(io["mean"].to_f64(), [p.normalization.mean[0]], "{name}");
        assert_eq!(io["std"].to_f64(), [p.normalization.std[0]], "{name}");

        // Features through the path `cxrlearn features` takes: u8 images,
        // the entry's preprocessing, eval mode.
        let encoder = Encoder::new(
            ModelSpec::from_entry(&entry),
            &imported.tensors,
            Device::Cpu,
        )
        .unwrap();
        let images = &io["images"];
        let [n, h, w] = images.shape[..] else {
            panic!("{name}: images are [n, h, w]")
        };
        let ours = encoder.features(&images.data, n, h, w);
        let reference = io["features"].to_tch();
        assert_eq!(ours.size(), [n as i64, 512], "{name}");
        let err = max_rel_err(&ours, &reference);
        eprintln!("{name}: max relative feature difference against PyTorch {err:.3e}");
        assert!(err < 1e-4, "{name}: features rel err {err}");
    }
}

#[test]
fn resnet18_release_offered_as_the_resnet50_entry_names_the_entry_to_use() {
    for ((name, file, _), resnet50) in RELEASES.into_iter().zip(["mococxr", "medaug"]) {
        let ck = release(file);
        let err = import(&registry::find(resnet50).unwrap(), &ck).unwrap_err();
        let ImportError::WrongVariant { use_instead, .. } = &err else {
            panic!("{file} as {resnet50}: expected the wrong-variant error, got {err}")
        };
        assert_eq!(*use_instead, name);
        // The ResNet-18 entry of the other method takes the same MoCo dict.
        let other = if resnet50 == "mococxr" {
            "medaug-resnet18"
        } else {
            "mococxr-resnet18"
        };
        assert!(import(&registry::find(other).unwrap(), &ck).is_ok());
    }
    let err = import(
        &registry::find("mococxr").unwrap(),
        &release("moco-cxr_resnet18"),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "checkpoint holds a ResNet-18, but model 'mococxr' is the ResNet-50 variant of \
         MoCo-CXR: use --model mococxr-resnet18"
    );
    let err = import(
        &registry::find("medaug").unwrap(),
        &release("medaug_mimic-cxr_resnet18"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.ends_with("variant of MedAug: use --model medaug-resnet18"),
        "{err}"
    );
}
