//! From flags to a run: the method's defaults with the flags' overrides,
//! decided once, into the [`PretrainConfig`] the loop trains and the
//! resolved config records.

use cxr_data::augment::Augment;
use cxr_nn::registry::Normalization;
use cxr_nn::spec::ModelSpec;

use super::{AugmentRule, Flags, Method, lookup};
use crate::error::Error;
use crate::optim::{GradClip, Lookahead, Rule};
use crate::schedule::{Plateau, Shape};
use crate::ssl::moco::MocoConfig;
use crate::ssl::validation::Validation;
use crate::ssl::{Positive, PretrainConfig};

/// A resolved pretraining run.
#[derive(Debug)]
pub struct Resolved {
    /// The method.
    pub method: &'static Method,
    /// The network trained (its encoder is what the run exports).
    pub spec: ModelSpec,
    /// Its name for the resolved config (`clip-visual` for CLIP's own ViT).
    pub backbone: String,
    /// The network's input side.
    pub input_size: i64,
    /// Everything the loop needs.
    pub config: PretrainConfig,
}

impl std::fmt::Debug for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidFlag(message.into())
}

/// Resolves `flags` for a store of `store_size`-pixel images; `given` are
/// the flags set on the command line ([`super::given_flags`]), refused
/// when the method does not read them.
///
/// # Errors
/// An unknown method, a flag of another method, or a value out of range,
/// each naming the flag.
pub fn resolve<'a>(
    flags: &Flags,
    given: impl IntoIterator<Item = &'a str>,
    store_size: i64,
) -> Result<Resolved, Error> {
    let method = lookup(&flags.method)?;
    method.check_flags(given)?;
    let size = flags.input_size.unwrap_or(store_size);
    // Checked before any model is built: see [`crate::model::MAX_INPUT_SIZE`].
    crate::model::check_input_size(size, "--input-size")?;
    // Zero epochs trained nothing yet wrote an encoder of initial weights
    // as if pretrained; refused as finetune refuses it.
    if flags.epochs == 0 {
        return Err(Error::NoEpochs);
    }
    let (spec, backbone) = (method.model)(flags, size)?;
    let d = method.defaults;
    let augment = match d.augment {
        AugmentRule::Never => Augment::none(size as usize, size as usize),
        AugmentRule::Own(_) if flags.text.no_augment => Augment::none(size as usize, size as usize),
        AugmentRule::Own(own) => own(size as usize),
        AugmentRule::Flags | AugmentRule::FlagsFlipInObjective => {
            let v = &flags.views;
            Augment {
                hflip: if matches!(d.augment, AugmentRule::Flags) {
                    v.hflip
                } else {
                    0.0
                },
                rotation_deg: v.rotation,
                crop_scale: match v.crop_scale[..] {
                    [lo, hi] => (lo, hi),
                    _ => return Err(invalid("--crop-scale takes two values, LO,HI")),
                },
                brightness: v.brightness,
                contrast: v.contrast,
                blur_p: v.blur_p,
                ..Augment::none(size as usize, size as usize)
            }
        }
    };
    augment.validate().map_err(|e| Error::Data(Box::new(e)))?;
    let (schedule, validation) = schedule_and_validation(flags, method)?;
    let mut config = PretrainConfig {
        method: method.name.to_owned(),
        epochs: flags.epochs,
        batch_size: flags.batch_size,
        rule: rule(flags, d.adam_beta1)?,
        no_decay_norm_bias: flags.no_decay_norm_bias,
        lookahead: match flags.lookahead.as_deref() {
            None => None,
            // alpha is checked with the other settings when training starts.
            Some(&[k, alpha]) if k >= 1.0 && k.fract() == 0.0 => {
                Some(Lookahead { k: k as u64, alpha })
            }
            Some(v) => {
                return Err(invalid(format!(
                    "--lookahead takes K,ALPHA with K a whole number >= 1, got {v:?}"
                )));
            }
        },
        lr: flags.lr,
        schedule,
        warmup_steps: flags.warmup_steps,
        augment,
        positive: positive(flags, method)?,
        moco: MocoConfig {
            temperature: flags.moco.temperature,
            queue: flags.moco.queue,
            momentum: flags.moco.key_momentum,
            dim: flags.moco.dim,
            ghost_batches: flags.moco.ghost_batches,
        },
        seed: flags.seed,
        checkpoint_every: flags.checkpoint_every,
        precision: flags.precision,
        channels_last: flags.channels_last,
        fused_optimizer: flags.fused_optimizer,
        text_lr: flags.text.text_lr,
        grad_clip: match (flags.grad_clip_norm, flags.grad_clip_value) {
            (Some(n), _) => Some(GradClip::Norm(n)),
            (None, Some(v)) => Some(GradClip::Value(v)),
            (None, None) => None,
        },
        clip: None,
        s2mts2: None,
        refers: None,
        convirt: None,
        gloria: None,
        validation,
    };
    (method.configure)(flags, &spec, &mut config)?;
    Ok(Resolved {
        method,
        spec,
        backbone,
        input_size: size,
        config,
    })
}

/// A from-scratch `--backbone` with its registry normalisation.
pub(super) fn scratch_model(flags: &Flags, size: i64) -> Result<(ModelSpec, String), Error> {
    scratch_with(flags, size, None)
}

/// A from-scratch `--backbone` with `normalization`.
pub(super) fn scratch_with(
    flags: &Flags,
    size: i64,
    normalization: Option<Normalization>,
) -> Result<(ModelSpec, String), Error> {
    let spec = ModelSpec::scratch(&flags.backbone, size, normalization)
        .map_err(|e| Error::Network(Box::new(e)))?;
    Ok((spec, flags.backbone.clone()))
}

/// The optimiser: AdamW with the method's β1, or SGD.
fn rule(flags: &Flags, beta1: f64) -> Result<Rule, Error> {
    if flags.optimizer == "sgd" {
        if flags.adam_beta1.is_some() {
            return Err(invalid("--adam-beta1 goes with --optimizer adamw"));
        }
        return Ok(Rule::Sgd {
            momentum: flags.momentum,
            weight_decay: flags.weight_decay,
        });
    }
    Ok(Rule::AdamW {
        beta1: flags.adam_beta1.unwrap_or(beta1),
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: flags.weight_decay,
    })
}

/// `--positive` against the method's rule.
fn positive(flags: &Flags, method: &Method) -> Result<Positive, Error> {
    let rule = method.positive;
    let Some(name) = flags.views.positive.as_deref() else {
        return Ok(rule.default);
    };
    let p = match name {
        "same-image" => Positive::SameImage,
        "same-patient" => Positive::SamePatient,
        _ => Positive::SameStudy,
    };
    if rule.accepts.contains(&p) {
        Ok(p)
    } else {
        Err(invalid(rule.refusal.replace("{}", name)))
    }
}

/// The schedule and validation: `--schedule` (default: the method's) and
/// the validation settings (a held-out share whenever the plateau
/// schedule, early stopping or `--val-fraction` asks for one).
pub(super) fn schedule_and_validation(
    flags: &Flags,
    method: &Method,
) -> Result<(Shape, Option<Validation>), Error> {
    let d = method.defaults;
    let shape = match flags.schedule.as_deref() {
        None => d.schedule,
        Some("cosine") => Shape::Cosine,
        Some("constant") => Shape::Constant,
        Some(_) => Shape::Plateau,
    };
    let early_stop = flags.early_stop.or(if shape == Shape::Plateau {
        d.early_stop_on_plateau
    } else {
        None
    });
    let wanted = shape == Shape::Plateau || early_stop.is_some() || flags.val_fraction.is_some();
    if !wanted {
        if flags.val_every.is_some()
            || flags.plateau_factor.is_some()
            || flags.plateau_patience.is_some()
        {
            return Err(invalid(
                "--val-every, --plateau-factor and --plateau-patience need validation: set --val-fraction or --schedule plateau",
            ));
        }
        return Ok((shape, None));
    }
    if shape != Shape::Plateau
        && (flags.plateau_factor.is_some() || flags.plateau_patience.is_some())
    {
        return Err(invalid(
            "--plateau-factor and --plateau-patience go with --schedule plateau",
        ));
    }
    let plateau = (shape == Shape::Plateau).then(|| Plateau {
        factor: flags.plateau_factor.unwrap_or(0.5),
        patience: flags.plateau_patience.unwrap_or(5),
        min_lr: d.min_lr,
    });
    let validation = Validation {
        fraction: flags.val_fraction.unwrap_or(0.05),
        every: flags.val_every.unwrap_or(d.val_every),
        plateau,
        early_stop,
    };
    validation.validate()?;
    Ok((shape, Some(validation)))
}
