//! SigLIP as an image-text model: both towers of a Hugging Face `siglip`
//! directory, loaded strictly, scored with the sigmoid the model was trained
//! with.

use tch::nn::VarStore;
use tch::{Device, Tensor};

use super::{ImageTextModel, Scoring, ids_on, on_cpu};
use crate::arch::siglip::{Siglip, SiglipConfig};
use crate::entry::Preprocessing;
use crate::error::NnError;
use crate::load::load_strict;
use crate::model_dir::ModelDir;
use crate::text::{TextTokenizer, TokenizerKind};

/// A SigLIP model (both towers, `logit_scale`, `logit_bias`).
#[derive(Debug)]
pub struct SiglipModel {
    /// The model's shape.
    pub config: SiglipConfig,
    /// How images are prepared.
    pub preprocessing: Preprocessing,
    model: Siglip,
    vs: VarStore,
}

impl SiglipModel {
    /// The model in a Hugging Face `siglip` directory, every tensor loaded
    /// strictly, with `preprocessing`.
    ///
    /// # Errors
    /// A configuration without a text tower, or weights that do not match
    /// it (every mismatched key named).
    pub fn from_dir(
        dir: &ModelDir,
        preprocessing: Preprocessing,
        device: Device,
    ) -> Result<Self, NnError> {
        let config = SiglipConfig::from_hf(&dir.config, &dir.config_file)?;
        if let Some(t) = &config.text {
            let text = crate::hf_config::min_text_parameters(
                t.vocab_size,
                t.hidden_size,
                t.num_hidden_layers,
            );
            let vision = crate::hf_config::min_parameters(
                &crate::backbone::Architecture::SiglipVisual(config.vision.clone()),
            );
            crate::hf_config::check_size(dir, "a SigLIP model", text.saturating_add(vision))?;
        }
        let mut vs = VarStore::new(device);
        let model = Siglip::new(&vs.root(), &config).ok_or_else(|| NnError::ModelConfig {
            file: dir.config_file.clone(),
            problem: "describes an image tower alone (no text_config); zero-shot needs a whole \
                      SiglipModel"
                .into(),
        })?;
        let tensors = dir.tensors()?;
        load_strict(&mut vs, &tensors, |_| false).map_err(|m| NnError::WeightsMismatch {
            file: dir.dir.clone(),
            mismatch: Box::new(m),
        })?;
        Ok(Self {
            config,
            preprocessing,
            model,
            vs,
        })
    }

    fn device(&self) -> Device {
        self.vs.device()
    }
}

impl ImageTextModel for SiglipModel {
    fn preprocessing(&self) -> &Preprocessing {
        &self.preprocessing
    }

    fn context_length(&self) -> usize {
        self.model.text.context_length() as usize
    }

    fn logit_scale(&self) -> f64 {
        self.model.logit_scale().exp()
    }

    fn scoring(&self) -> Scoring {
        Scoring::Sigmoid {
            scale: self.logit_scale(),
            bias: self.model.logit_bias(),
        }
    }

    fn check_tokenizer(&self, tokenizer: &TextTokenizer) -> Result<(), String> {
        let vocab = self.model.text.config().vocab_size;
        if tokenizer.vocab_size() as i64 > vocab {
            return Err(format!(
                "it has {} ids but the model's text tower embeds {vocab}",
                tokenizer.vocab_size()
            ));
        }
        // The text tower pools the last position: texts must be padded to
        // the context with the pad token and end with the tokenizer's own
        // template, as a tokenizer.json gives them.
        if tokenizer.kind != TokenizerKind::HfJson {
            return Err("SigLIP needs its tokenizer.json (a Hugging Face tokenizer)".into());
        }
        Ok(())
    }

    fn encode_images(&self, images: &[u8], n: usize, h: usize, w: usize) -> Tensor {
        let x = self.preprocessing.input(images, n, h, w, self.device());
        on_cpu(|| self.model.image_features(&x))
    }

    fn encode_texts(&self, ids: &[i64], n: usize) -> Tensor {
        on_cpu(|| self.model.text_features(&ids_on(ids, n, self.device())))
    }
}
