//! What a registry entry is: the types every `models/*.rs` file fills in
//! (architecture, key mapping, preprocessing) and the key rules they share.
//! They live apart from [`crate::registry`], which lists the models, so the
//! imports run one way: registry -> models -> entry.

use crate::backbone::Architecture;

/// What to do with one checkpoint tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRule {
    /// Load it under this name.
    Keep(String),
    /// Deliberately unused (projection heads, key encoders, queues, text
    /// towers, optimizer state); the reason is reported.
    Ignore(&'static str),
}

/// Image statistics the model was pretrained with, on a 0-1 pixel scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    /// Per-channel mean.
    pub mean: [f64; 3],
    /// Per-channel standard deviation.
    pub std: [f64; 3],
}

/// ImageNet statistics (torchvision).
pub const IMAGENET: Normalization = Normalization {
    mean: [0.485, 0.456, 0.406],
    std: [0.229, 0.224, 0.225],
};

/// OpenAI CLIP statistics: what the original cxrlearn fed every model
/// (`--normalization clip` reproduces that).
pub const CLIP: Normalization = Normalization {
    mean: [0.481_454_66, 0.457_827_5, 0.408_210_73],
    std: [0.268_629_54, 0.261_302_58, 0.275_777_11],
};

/// How images are prepared for a model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preprocessing {
    /// Side of the square input in pixels.
    pub size: i64,
    /// Channels the network takes (grayscale is replicated).
    pub channels: i64,
    /// Statistics the model was pretrained with.
    pub normalization: Normalization,
    /// How the upstream code brought images to `size`.
    pub resize: &'static str,
    /// Side the model itself resizes its input to (GLoRIA upsamples to 299).
    pub internal_resize: Option<i64>,
    /// Side images are resized to before a centre crop of `size` (DINOv2's
    /// image processor: shortest edge 256, crop 224); `None` resizes straight
    /// to `size`.
    pub crop_from: Option<i64>,
}

impl Preprocessing {
    /// The network input `[n, channels, size, size]` on `device` from `n`
    /// grayscale u8 images of `h x w` (row-major, concatenated): scaled to
    /// 0-1, resized bilinearly to `size` when they differ (to `crop_from`,
    /// then centre-cropped to `size`, when that is set), replicated to the
    /// channels, normalised, then resized to `internal_resize` when the model
    /// does that itself (GLoRIA upsamples to 299).
    pub fn input(
        &self,
        images: &[u8],
        n: usize,
        h: usize,
        w: usize,
        device: tch::Device,
    ) -> tch::Tensor {
        use tch::{Kind, Tensor};
        assert_eq!(
            images.len(),
            n * h * w,
            "batch bytes do not match n x h x w"
        );
        let host = Tensor::from_slice(images).view([n as i64, 1, h as i64, w as i64]);
        // The u8 batch (a quarter of the float bytes) crosses to the GPU
        // from pinned memory without blocking the host; the conversion runs
        // on the device.
        let on_device = if device.is_cuda() {
            host.pin_memory(device)
                .to_device_(device, Kind::Uint8, true, false)
        } else {
            host
        };
        let mut x = on_device.to_kind(Kind::Float) / 255.0;
        let side = self.crop_from.unwrap_or(self.size);
        if (h as i64, w as i64) != (side, side) {
            x = x.upsample_bilinear2d([side, side], false, None, None);
        }
        if side > self.size {
            // Hugging Face's centre crop: the top-left corner at
            // (side - size) / 2, rounded down.
            let at = (side - self.size) / 2;
            x = x.narrow(2, at, self.size).narrow(3, at, self.size);
        }
        let x = x.expand([n as i64, self.channels, self.size, self.size], false);
        let stats = |v: [f64; 3]| {
            Tensor::from_slice(&v[..self.channels as usize])
                .to_kind(Kind::Float)
                .view([1, self.channels, 1, 1])
                .to_device(device)
        };
        let x = (x - stats(self.normalization.mean)) / stats(self.normalization.std);
        match self.internal_resize {
            Some(side) => x.upsample_bilinear2d([side, side], true, None, None),
            None => x,
        }
    }

    /// 224 px, three replicated channels, ImageNet statistics: what most
    /// torchvision-style encoders were pretrained with; `resize` says how.
    pub fn imagenet_224(resize: &'static str) -> Self {
        Self {
            size: 224,
            channels: 3,
            normalization: IMAGENET,
            resize,
            internal_resize: None,
            crop_from: None,
        }
    }
}

/// One pretrained model.
#[derive(Debug, Clone)]
pub struct ModelEntry {
    /// Registry name (`cxrlearn features --model NAME`).
    pub name: &'static str,
    /// The pretraining method; entries sharing it are variants of one
    /// release (GLoRIA's, MoCo-CXR's and MedAug's ResNet-50 and ResNet-18),
    /// so a checkpoint of the other variant can be pointed at its entry.
    pub method: &'static str,
    /// One line on what it is.
    pub description: &'static str,
    /// The architecture, without heads.
    pub architecture: Architecture,
    /// File name of the released checkpoint.
    pub checkpoint_file: &'static str,
    /// The container that file comes in.
    pub container: &'static str,
    /// Maps a checkpoint tensor name onto the architecture's names.
    pub map_key: fn(&str) -> KeyRule,
    /// What the feature vector is.
    pub feature: &'static str,
    /// Input preparation.
    pub preprocessing: Preprocessing,
    /// Reference for the method and weights.
    pub citation: &'static str,
    /// The weights' licence as their publisher states it (`NOT_RECORDED`
    /// where this project has not recorded it: read the release).
    pub licence: &'static str,
    /// The licence restricts use (research only, terms of use to accept):
    /// `cxrlearn models` says so beside the entry.
    pub restricted: bool,
    /// What `--checkpoint` takes: one file, or a publisher's directory.
    pub weights: Weights,
}

/// The licence of an entry this project has not recorded.
pub const NOT_RECORDED: &str = "not recorded by cxrlearn: read the release";

/// What a registry entry's `--checkpoint` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weights {
    /// A single checkpoint file (any supported container).
    File,
    /// A directory as the publisher lays it out; its configuration decides
    /// the architecture's size (within the entry's family).
    Dir(crate::model_dir::DirFormat),
}

impl ModelEntry {
    /// The entry as JSON: what `cxrlearn models --json` prints and
    /// `cxrlearn.models.list()` returns.
    pub fn summary(&self) -> serde_json::Value {
        let p = &self.preprocessing;
        serde_json::json!({
            "name": self.name,
            "method": self.method,
            "description": self.description,
            "architecture": self.architecture.describe(),
            "feature": self.feature,
            "feature_dim": self.feature_dim(),
            "checkpoint_file": self.checkpoint_file,
            "container": self.container,
            "preprocessing": {
                "size": p.size,
                "channels": p.channels,
                "mean": p.normalization.mean,
                "std": p.normalization.std,
                "resize": p.resize,
                "internal_resize": p.internal_resize,
                "crop_from": p.crop_from,
            },
            "citation": self.citation,
            "licence": self.licence,
            "restricted": self.restricted,
            "weights": match self.weights {
                Weights::File => "file".to_owned(),
                Weights::Dir(f) => format!("{} directory", f.prefix()),
            },
        })
    }

    /// Dimension of the feature vector.
    pub fn feature_dim(&self) -> i64 {
        self.architecture.feature_dim()
    }
}

/// Strips the first of `prefixes` that `name` starts with; `None` when none does.
pub fn strip_any<'a>(name: &'a str, prefixes: &[&str]) -> Option<&'a str> {
    prefixes.iter().find_map(|p| name.strip_prefix(p))
}

/// The rule shared by torchvision trunks: batch counters and classifier heads
/// are not part of the feature extractor.
pub fn torchvision_trunk(name: &str, head: &str) -> KeyRule {
    if name.ends_with("num_batches_tracked") {
        KeyRule::Ignore("batch-norm step counter")
    } else if name.starts_with(head) {
        KeyRule::Ignore("classifier head (features are taken before it)")
    } else {
        KeyRule::Keep(name.to_owned())
    }
}
