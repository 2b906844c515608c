//! open_clip (BiomedCLIP's layout) as an image-text model: both towers of an
//! open_clip directory, loaded strictly, scored as CLIP.

use tch::nn::VarStore;
use tch::{Device, Tensor};

use super::{ImageTextModel, Scoring, ids_on, on_cpu};
use crate::arch::open_clip::{HfBertConfig, OpenClip, OpenClipConfig, OpenClipDir, read};
use crate::entry::Preprocessing;
use crate::error::NnError;
use crate::load::load_strict;
use crate::model_dir::ModelDir;
use crate::text::{TextTokenizer, TokenizerKind};

/// An open_clip model with a timm image tower and a BERT text tower.
#[derive(Debug)]
pub struct OpenClipModel {
    /// `open_clip_config.json`.
    pub config: OpenClipConfig,
    /// The text tower's BERT.
    pub bert: HfBertConfig,
    /// How images are prepared.
    pub preprocessing: Preprocessing,
    model: OpenClip,
    vs: VarStore,
}

impl OpenClipModel {
    /// The model in an open_clip directory, every tensor loaded strictly
    /// (as open_clip's `load_checkpoint` prepares them), with
    /// `preprocessing`.
    ///
    /// # Errors
    /// A configuration cxrlearn does not build, or weights that do not
    /// match it (every mismatched key named).
    pub fn from_dir(
        dir: &ModelDir,
        preprocessing: Preprocessing,
        device: Device,
    ) -> Result<Self, NnError> {
        let read = read(dir)?;
        // The BERT's shape may come from a config.json beside the weights:
        // its size is checked against them before anything is built.
        let b = &read.bert.bert;
        let text = crate::hf_config::min_text_parameters(b.vocab_size, b.hidden, b.layers);
        let vision =
            crate::hf_config::min_parameters(&crate::backbone::Architecture::OpenClipVisual {
                vision: read.config.vision.clone(),
                embed_dim: read.config.embed_dim,
            });
        crate::hf_config::check_size(dir, "an open_clip model", text.saturating_add(vision))?;
        Self::from_read(read, preprocessing, device)
    }

    /// The model of a directory already read ([`crate::arch::open_clip::read`]).
    ///
    /// # Errors
    /// Weights that do not match the configuration (every mismatched key
    /// named).
    pub fn from_read(
        read: OpenClipDir,
        preprocessing: Preprocessing,
        device: Device,
    ) -> Result<Self, NnError> {
        let mut vs = VarStore::new(device);
        let model = OpenClip::new(&vs.root(), &read.config, &read.bert);
        load_strict(&mut vs, &read.tensors, |_| false).map_err(|m| NnError::WeightsMismatch {
            file: read.weights.clone(),
            mismatch: Box::new(m),
        })?;
        Ok(Self {
            config: read.config,
            bert: read.bert,
            preprocessing,
            model,
            vs,
        })
    }

    fn device(&self) -> Device {
        self.vs.device()
    }
}

impl ImageTextModel for OpenClipModel {
    fn preprocessing(&self) -> &Preprocessing {
        &self.preprocessing
    }

    fn context_length(&self) -> usize {
        self.config.text.context_length as usize
    }

    fn logit_scale(&self) -> f64 {
        self.model.logit_scale().exp()
    }

    fn scoring(&self) -> Scoring {
        Scoring::Softmax {
            scale: self.logit_scale(),
        }
    }

    fn check_tokenizer(&self, tokenizer: &TextTokenizer) -> Result<(), String> {
        let vocab = self.bert.bert.vocab_size;
        if tokenizer.vocab_size() as i64 != vocab {
            return Err(format!(
                "it has {} ids but the model's BERT embeds {vocab}",
                tokenizer.vocab_size()
            ));
        }
        // The mask is `ids != pad`: the tokenizer must pad with the BERT's pad id.
        if i64::from(tokenizer.pad_id) != self.bert.pad_token_id {
            return Err(format!(
                "it pads with id {} but the BERT's pad token is {}",
                tokenizer.pad_id, self.bert.pad_token_id
            ));
        }
        if tokenizer.kind == TokenizerKind::ClipBpe {
            return Err("a CLIP BPE vocabulary cannot feed a BERT text tower".into());
        }
        Ok(())
    }

    fn encode_images(&self, images: &[u8], n: usize, h: usize, w: usize) -> Tensor {
        let x = self.preprocessing.input(images, n, h, w, self.device());
        on_cpu(|| self.model.encode_image_t(&x, false))
    }

    fn encode_texts(&self, ids: &[i64], n: usize) -> Tensor {
        on_cpu(|| {
            self.model
                .encode_text_t(&ids_on(ids, n, self.device()), false)
        })
    }
}
