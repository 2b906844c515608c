//! What to build for a model: an architecture and its input preprocessing,
//! either from a registry entry (a released checkpoint) or from a bare
//! architecture name (training from scratch, or weights this project wrote,
//! described by a JSON sidecar next to the safetensors file).

use std::path::Path;

use crate::arch::Norm;
use crate::arch::clip::ClipConfig;
use crate::arch::densenet::{Activation, DenseNetConfig};
use crate::arch::dinov2::Dinov2Config;
use crate::arch::pooling::Pooling;
use crate::arch::resnet::ResNetConfig;
use crate::arch::vit::VitConfig;
use crate::backbone::Architecture;
use crate::error::NnError;
use crate::registry::{self, IMAGENET, ModelEntry, Normalization, Preprocessing};

/// A buildable model description.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// Registry name, or the architecture name for bare architectures.
    pub name: String,
    /// The architecture, without heads.
    pub architecture: Architecture,
    /// Input preparation.
    pub preprocessing: Preprocessing,
    /// The registry entry when the model is a registered release (its key
    /// mapping applies to released checkpoints).
    pub entry: Option<ModelEntry>,
}

/// A bare architecture: its name and how to build it.
type ArchitectureDef = (&'static str, fn() -> Architecture);

/// Bare architectures for `scratch:NAME` and sidecars, in the order help and
/// errors list them: the one table both the lookup and the names come from.
const TABLE: [ArchitectureDef; 11] = [
    ("resnet18", || {
        Architecture::ResNet(ResNetConfig::resnet18(None))
    }),
    ("resnet50", || {
        Architecture::ResNet(ResNetConfig::resnet50(None))
    }),
    ("densenet121", || {
        Architecture::DenseNet(DenseNetConfig::densenet121(None))
    }),
    ("vit-b16", || Architecture::Vit(VitConfig::vit_b16(None))),
    // Narrow ResNet-18s: the phantom-scale backbones of tests and demos;
    // `-gn` with GroupNorm(8), the tiny contrastive default (docs/ssl-methods.md (Phantom-scale configurations; Pitfalls)).
    ("resnet18-w16", || narrow_resnet18(16, Norm::Batch)),
    ("resnet18-w32", || narrow_resnet18(32, Norm::Batch)),
    ("resnet18-w16-gn", || narrow_resnet18(16, Norm::Group(8))),
    ("resnet18-w32-gn", || narrow_resnet18(32, Norm::Group(8))),
    // S2MTS2's backbone: every activation LeakyReLU(0.1) (docs/ssl-methods.md (S2MTS2)).
    ("densenet121-leaky", || {
        Architecture::DenseNet(DenseNetConfig {
            activation: Activation::LeakyRelu(0.1),
            ..DenseNetConfig::densenet121(None)
        })
    }),
    // The phantom-scale S2MTS2 backbone of docs/ssl-methods.md (Phantom-scale configurations): growth 8, two layers per
    // block, a stem of twice the growth as DenseNet-121 has; 32 features.
    ("densenet-tiny", || {
        Architecture::DenseNet(DenseNetConfig {
            growth_rate: 8,
            block_config: [2, 2, 2, 2],
            num_init_features: 16,
            activation: Activation::LeakyRelu(0.1),
            ..DenseNetConfig::densenet121(None)
        })
    }),
    // REFERS' ViT at phantom scale (docs/ssl-methods.md (Phantom-scale configurations)): 64-pixel
    // inputs in 8-pixel patches, width 96, 4 layers, 3 heads, MLP 384.
    ("vit-tiny", || {
        Architecture::Vit(VitConfig {
            image_size: 64,
            patch_size: 8,
            hidden: 96,
            layers: 4,
            heads: 3,
            mlp: 384,
            ..VitConfig::vit_b16(None)
        })
    }),
];

/// A ResNet-18 of stem width `width` with `norm` layers.
fn narrow_resnet18(width: i64, norm: Norm) -> Architecture {
    Architecture::ResNet(ResNetConfig {
        width,
        norm,
        ..ResNetConfig::resnet18(None)
    })
}

/// The names of [`TABLE`], computed at compile time so the public list is
/// still a constant.
const fn table_names<const N: usize>(table: &[ArchitectureDef; N]) -> [&'static str; N] {
    let mut names = [""; N];
    let mut i = 0;
    while i < N {
        names[i] = table[i].0;
        i += 1;
    }
    names
}

/// Bare architectures by name, for `scratch:NAME` and sidecars.
pub const ARCHITECTURES: [&str; TABLE.len()] = table_names(&TABLE);

/// The architecture called `name` (see [`ARCHITECTURES`]).
///
/// # Errors
/// [`NnError::UnknownArchitecture`], whose message lists the known names.
pub fn architecture(name: &str) -> Result<Architecture, NnError> {
    TABLE
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, build)| build())
        .ok_or_else(|| NnError::UnknownArchitecture {
            name: name.to_owned(),
            known: &ARCHITECTURES,
        })
}

impl ModelSpec {
    /// The spec of a registry entry.
    pub fn from_entry(entry: &ModelEntry) -> Self {
        Self {
            name: entry.name.to_owned(),
            architecture: entry.architecture.clone(),
            preprocessing: entry.preprocessing,
            entry: Some(entry.clone()),
        }
    }

    /// A bare architecture taking `size`-pixel inputs, three replicated
    /// channels normalised with ImageNet statistics (so weights trained this
    /// way and torchvision's share one input convention).
    ///
    /// # Errors
    /// As [`architecture`]; also when the architecture needs a fixed input
    /// size other than `size`.
    pub fn scratch(
        name: &str,
        size: i64,
        normalization: Option<Normalization>,
    ) -> Result<Self, NnError> {
        let architecture = architecture(name)?;
        if let Architecture::Vit(c) = &architecture
            && c.image_size != size
        {
            return Err(NnError::InputSize {
                architecture: name.to_owned(),
                expected: c.image_size,
                size,
            });
        }
        Ok(Self {
            name: name.to_owned(),
            architecture,
            preprocessing: Preprocessing {
                size,
                channels: 3,
                normalization: normalization.unwrap_or(IMAGENET),
                resize: "the store's images, resampled bilinearly when sizes differ",
                internal_resize: None,
                crop_from: None,
            },
            entry: None,
        })
    }

    /// A CLIP image tower (`visual.*`, the projected embedding as
    /// features) at `config`, taking `config.image_resolution`-pixel inputs.
    pub fn clip_visual(config: ClipConfig, normalization: Normalization) -> Self {
        Self {
            name: CLIP_VISUAL.to_owned(),
            preprocessing: Preprocessing {
                size: config.image_resolution,
                channels: 3,
                normalization,
                resize: "the store's images, resampled bilinearly when sizes differ",
                internal_resize: None,
                crop_from: None,
            },
            architecture: Architecture::ClipVisual(config),
            entry: None,
        }
    }

    /// The sidecar JSON written next to weights this project saves: enough to
    /// rebuild the spec with [`ModelSpec::from_sidecar`].
    pub fn sidecar(&self) -> serde_json::Value {
        let n = self.preprocessing.normalization;
        let p = &self.preprocessing;
        match (&self.entry, &self.architecture) {
            // Sized by their configuration file, not by the registry: the
            // shape, pooling and preprocessing are written out whole (the
            // entry, if any, is provenance).
            (_, Architecture::Dinov2 { config, pooling }) => serde_json::json!({
                "architecture": DINOV2,
                "model": self.entry.as_ref().map(|e| e.name),
                "dinov2": config.to_hf(),
                "pooling": pooling,
                "input_size": p.size,
                "crop_from": p.crop_from,
                "normalization": {"mean": n.mean, "std": n.std},
            }),
            (_, Architecture::SiglipVisual(vision)) => serde_json::json!({
                "architecture": SIGLIP_VISUAL,
                "model": self.entry.as_ref().map(|e| e.name),
                "siglip_vision": vision,
                "input_size": p.size,
                "crop_from": p.crop_from,
                "normalization": {"mean": n.mean, "std": n.std},
            }),
            (_, Architecture::OpenClipVisual { vision, embed_dim }) => serde_json::json!({
                "architecture": OPEN_CLIP_VISUAL,
                "model": self.entry.as_ref().map(|e| e.name),
                "open_clip_vision": vision,
                "embed_dim": embed_dim,
                "input_size": p.size,
                "crop_from": p.crop_from,
                "normalization": {"mean": n.mean, "std": n.std},
            }),
            (Some(e), _) => {
                serde_json::json!({"model": e.name, "input_size": self.preprocessing.size})
            }
            (None, Architecture::ClipVisual(c)) => serde_json::json!({
                "architecture": CLIP_VISUAL,
                "clip": c,
                "input_size": self.preprocessing.size,
                "normalization": {"mean": n.mean, "std": n.std},
            }),
            (None, _) => serde_json::json!({
                "architecture": self.name,
                "input_size": self.preprocessing.size,
                "normalization": {"mean": n.mean, "std": n.std},
            }),
        }
    }

    /// Rebuilds a spec from a sidecar: `{"model": registry name}` or
    /// `{"architecture": name, "input_size": n, "normalization": {...}}`.
    ///
    /// # Errors
    /// Errors naming the file and the field that is missing or unknown.
    pub fn from_sidecar(meta: &serde_json::Value, file: &Path) -> Result<Self, NnError> {
        if matches!(
            meta["architecture"].as_str(),
            Some(DINOV2 | OPEN_CLIP_VISUAL | SIGLIP_VISUAL)
        ) {
            return Self::configured_from_sidecar(meta, file);
        }
        if let Some(name) = meta["model"].as_str() {
            let mut spec = Self::from_entry(&registry::find(name)?);
            if let Some(size) = meta["input_size"].as_i64() {
                spec.preprocessing.size = size;
            }
            return Ok(spec);
        }
        let name = meta["architecture"]
            .as_str()
            .ok_or_else(|| NnError::SidecarUnnamed {
                file: file.to_owned(),
            })?;
        let size = meta["input_size"]
            .as_i64()
            .ok_or_else(|| NnError::SidecarField {
                file: file.to_owned(),
                field: "input_size",
            })?;
        let normalization = sidecar_normalization(meta);
        if name == CLIP_VISUAL {
            let config = clip_config_from_json(&meta["clip"], file, "clip")?;
            if config.image_resolution != size {
                return Err(NnError::ClipInputSize {
                    file: file.to_owned(),
                    expected: config.image_resolution,
                    size,
                });
            }
            return Ok(Self::clip_visual(config, normalization.unwrap_or(IMAGENET)));
        }
        Self::scratch(name, size, normalization)
    }

    /// Dimension of the feature vector.
    pub fn feature_dim(&self) -> i64 {
        self.architecture.feature_dim()
    }

    /// The sidecar of an architecture sized by its publisher's
    /// configuration (DINOv2, an open_clip image tower): the shape, the
    /// pooling, the input and its statistics.
    fn configured_from_sidecar(meta: &serde_json::Value, file: &Path) -> Result<Self, NnError> {
        let bad = |field: &str, v: &serde_json::Value, e: String| NnError::ModelConfig {
            file: file.to_owned(),
            problem: format!("\"{field}\" is {v}: {e}"),
        };
        let architecture = if meta["architecture"].as_str() == Some(DINOV2) {
            let config = Dinov2Config::from_hf(&meta["dinov2"], file)?;
            let pooling = match &meta["pooling"] {
                serde_json::Value::Null => Pooling::default(),
                v => serde_json::from_value(v.clone())
                    .map_err(|_| bad("pooling", v, "expected cls, mean or cls+mean".into()))?,
            };
            Architecture::Dinov2 { config, pooling }
        } else if meta["architecture"].as_str() == Some(SIGLIP_VISUAL) {
            let v = &meta["siglip_vision"];
            let vision = serde_json::from_value(v.clone())
                .map_err(|e| bad("siglip_vision", v, e.to_string()))?;
            Architecture::SiglipVisual(vision)
        } else {
            let v = &meta["open_clip_vision"];
            let vision = serde_json::from_value(v.clone())
                .map_err(|e| bad("open_clip_vision", v, e.to_string()))?;
            let embed_dim = meta["embed_dim"].as_i64().ok_or(NnError::SidecarField {
                file: file.to_owned(),
                field: "embed_dim",
            })?;
            Architecture::OpenClipVisual { vision, embed_dim }
        };
        let field = |field: &'static str| NnError::SidecarField {
            file: file.to_owned(),
            field,
        };
        let size = meta["input_size"]
            .as_i64()
            .ok_or_else(|| field("input_size"))?;
        let Some(Normalization { mean, std }) = sidecar_normalization(meta) else {
            return Err(field("normalization"));
        };
        let entry = meta["model"].as_str().and_then(|n| registry::find(n).ok());
        let kind = meta["architecture"].as_str().unwrap_or(DINOV2);
        Ok(Self {
            name: entry.as_ref().map_or(kind, |e| e.name).to_owned(),
            architecture,
            preprocessing: Preprocessing {
                size,
                channels: 3,
                normalization: Normalization { mean, std },
                resize: "as recorded in the sidecar: the store's images resampled bilinearly",
                internal_resize: None,
                crop_from: meta["crop_from"].as_i64(),
            },
            entry,
        })
    }
}

/// A sidecar's `"normalization": {"mean": [3], "std": [3]}`, when whole.
fn sidecar_normalization(meta: &serde_json::Value) -> Option<Normalization> {
    let stats = |key: &str| -> Option<[f64; 3]> {
        let v: Vec<f64> = meta["normalization"][key]
            .as_array()?
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .collect();
        v.try_into().ok()
    };
    Some(Normalization {
        mean: stats("mean")?,
        std: stats("std")?,
    })
}

/// Sidecar architecture name of a DINOv2 encoder; its shape is the
/// sidecar's `"dinov2"` object, in `config.json`'s fields.
pub const DINOV2: &str = "dinov2";

/// Sidecar architecture name of a SigLIP image tower; its shape is the
/// sidecar's `"siglip_vision"` object, in `config.json`'s fields.
pub const SIGLIP_VISUAL: &str = "siglip-visual";

/// Sidecar architecture name of an open_clip image tower with a timm
/// trunk; its shape is the sidecar's `"open_clip_vision"` object.
pub const OPEN_CLIP_VISUAL: &str = "open-clip-visual";

/// Sidecar architecture name of a CLIP image tower; its shape is the
/// sidecar's `"clip"` object.
pub const CLIP_VISUAL: &str = "clip-visual";

/// The CLIP shape in the `object` field of the sidecar `file` (named in the
/// error), as `serde_json` writes a [`ClipConfig`]: the one reader of both
/// sidecars that store it ([`ModelSpec::sidecar`] and `ClipModel::save`).
///
/// # Errors
/// [`NnError::ClipConfig`] naming the first field (in the written order)
/// that is missing or not an integer.
pub fn clip_config_from_json(
    v: &serde_json::Value,
    file: &Path,
    object: &'static str,
) -> Result<ClipConfig, NnError> {
    serde_json::from_value(v.clone()).map_err(|e| {
        // serde names a missing field but not a mistyped one; the written
        // layout's field names (from the derive, not a second list) find the
        // first field a user must fix.
        let layout = serde_json::to_value(ClipConfig::vit_b32()).unwrap_or_default();
        let fields = layout.as_object().into_iter().flat_map(|o| o.keys());
        let problem = match fields
            .into_iter()
            .find(|k| v[k.as_str()].as_i64().is_none())
        {
            Some(field) => format!("has no integer \"{field}\""),
            None => format!("is not a CLIP shape: {e}"),
        };
        NnError::ClipConfig {
            file: file.to_owned(),
            object,
            problem,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_round_trips() {
        let spec = ModelSpec::scratch("resnet18-w16", 64, None).unwrap();
        let back = ModelSpec::from_sidecar(&spec.sidecar(), Path::new("x.json")).unwrap();
        assert_eq!(back.name, spec.name);
        assert_eq!(back.architecture, spec.architecture);
        assert_eq!(back.preprocessing, spec.preprocessing);
        let reg = ModelSpec::from_entry(&registry::find("resnet50-imagenet").unwrap());
        let back = ModelSpec::from_sidecar(&reg.sidecar(), Path::new("x.json")).unwrap();
        assert_eq!(back.name, "resnet50-imagenet");
        assert_eq!(back.feature_dim(), 2048);
    }

    #[test]
    fn leaky_densenet_sidecars_round_trip() {
        for (name, dim) in [("densenet-tiny", 32), ("densenet121-leaky", 1024)] {
            let spec = ModelSpec::scratch(name, 64, None).unwrap();
            let back = ModelSpec::from_sidecar(&spec.sidecar(), Path::new("x.json")).unwrap();
            assert_eq!(back.name, name);
            assert_eq!(back.architecture, spec.architecture);
            assert_eq!(back.feature_dim(), dim);
            let Architecture::DenseNet(c) = &back.architecture else {
                panic!("{name} is not a DenseNet");
            };
            assert_eq!(c.activation, Activation::LeakyRelu(0.1));
        }
        let Architecture::DenseNet(c) = architecture("densenet121").unwrap() else {
            panic!("densenet121 is not a DenseNet");
        };
        assert_eq!(c.activation, Activation::Relu);
    }

    #[test]
    fn vit_tiny_sidecar_round_trips() {
        let spec = ModelSpec::scratch("vit-tiny", 64, None).unwrap();
        assert_eq!(spec.feature_dim(), 96);
        let back = ModelSpec::from_sidecar(&spec.sidecar(), Path::new("x.json")).unwrap();
        assert_eq!(back.name, "vit-tiny");
        assert_eq!(back.architecture, spec.architecture);
        assert_eq!(back.preprocessing, spec.preprocessing);
        assert!(ModelSpec::scratch("vit-tiny", 128, None).is_err());
    }

    #[test]
    fn clip_visual_sidecar_round_trips() {
        let config = ClipConfig {
            image_resolution: 64,
            vision_patch_size: 16,
            ..ClipConfig::vit_b32()
        };
        let spec = ModelSpec::clip_visual(config, IMAGENET);
        let back = ModelSpec::from_sidecar(&spec.sidecar(), Path::new("x.json")).unwrap();
        assert_eq!(back.architecture, spec.architecture);
        assert_eq!(back.preprocessing, spec.preprocessing);
    }

    #[test]
    fn clip_shape_errors_name_the_file_and_field() {
        let mut v = serde_json::json!(ClipConfig::vit_b32());
        let file = Path::new("m.json");
        assert_eq!(
            clip_config_from_json(&v, file, "clip").unwrap(),
            ClipConfig::vit_b32()
        );
        v["vision_width"] = serde_json::json!(1.5);
        let err = clip_config_from_json(&v, file, "clip").unwrap_err();
        assert_eq!(
            err.to_string(),
            "m.json: \"clip\" has no integer \"vision_width\""
        );
        v.as_object_mut().unwrap().remove("context_length");
        let err = clip_config_from_json(&v, file, "clip_config").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("m.json: \"clip_config\" has no integer \""),
            "{err}"
        );
    }

    #[test]
    fn configured_sidecars_round_trip() {
        for name in [
            "rad-dino",
            "dinov2-small",
            "biomedclip",
            "medsiglip-448",
            "xraysiglip",
        ] {
            let mut spec = ModelSpec::from_entry(&registry::find(name).unwrap());
            if let Some(a) = spec.architecture.with_pooling(Pooling::ClsMean) {
                spec.architecture = a;
            }
            let back = ModelSpec::from_sidecar(&spec.sidecar(), Path::new("x.json")).unwrap();
            assert_eq!(back.name, name);
            assert_eq!(back.architecture, spec.architecture, "{name}");
            let (a, b) = (back.preprocessing, spec.preprocessing);
            assert_eq!(
                (a.size, a.crop_from, a.normalization),
                (b.size, b.crop_from, b.normalization),
                "{name}"
            );
        }
        assert_eq!(
            registry::find("dinov2-base")
                .unwrap()
                .architecture
                .with_pooling(Pooling::ClsMean)
                .unwrap()
                .feature_dim(),
            1536
        );
        // Shapes other than an entry's default, with and without an entry:
        // the sidecar's shape wins.
        let small_siglip = crate::arch::siglip::SiglipConfig::base_patch16(64).vision;
        for entry in [None, registry::find("xraysiglip").ok()] {
            let spec = ModelSpec {
                name: "x".into(),
                architecture: Architecture::SiglipVisual(small_siglip.clone()),
                preprocessing: Preprocessing::imagenet_224("test"),
                entry,
            };
            let back = ModelSpec::from_sidecar(&spec.sidecar(), Path::new("x.json")).unwrap();
            assert_eq!(back.architecture, spec.architecture);
        }
        let spec = ModelSpec {
            name: "x".into(),
            architecture: Architecture::Dinov2 {
                config: Dinov2Config::small(),
                pooling: Pooling::Mean,
            },
            preprocessing: Preprocessing::imagenet_224("test"),
            entry: registry::find("rad-dino").ok(),
        };
        let back = ModelSpec::from_sidecar(&spec.sidecar(), Path::new("x.json")).unwrap();
        assert_eq!(back.architecture, spec.architecture);
        assert_eq!(back.name, "rad-dino");
    }

    #[test]
    fn unknown_names_are_listed() {
        let err = architecture("resnet7").unwrap_err().to_string();
        assert!(err.contains("resnet18-w16"), "{err}");
        assert!(ModelSpec::scratch("vit-b16", 64, None).is_err());
    }
}
