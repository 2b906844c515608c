//! Each method's settings from the flags: its defaults for the input size
//! with the flags' overrides, and its flags refused with other methods.

use anyhow::{Context, Result, bail};
use cxr_data::augment::Augment;
use cxr_learn::schedule::{Plateau, Shape};
use cxr_learn::ssl::clip::ClipSettings;
use cxr_learn::ssl::convirt::ConvirtSettings;
use cxr_learn::ssl::gloria::GloriaSettings;
use cxr_learn::ssl::gloria_attention::Gammas;
use cxr_learn::ssl::refers::RefersSettings;
use cxr_learn::ssl::s2mts2::S2mts2Settings;
use cxr_learn::ssl::text_side::{BertSettings, Pooling};
use cxr_learn::ssl::validation::Validation;
use cxr_nn::registry::Normalization;
use cxr_nn::spec::ModelSpec;

use super::Args;

/// CheXzero's pixel statistics (101.48761 and 83.43944 on the 0-255 scale).
pub(super) const CHEXZERO: Normalization = Normalization {
    mean: [101.487_61 / 255.0; 3],
    std: [83.439_44 / 255.0; 3],
};

/// The CLIP settings: the default for the input size (tiny up to 128 px,
/// ViT-B/32 above) with the flags' overrides.
pub(super) fn clip_settings(args: &Args, size: i64) -> ClipSettings {
    let d = ClipSettings::for_size(size);
    ClipSettings {
        embed_dim: args.embed_dim.unwrap_or(d.embed_dim),
        vision_layers: args.vision_layers.unwrap_or(d.vision_layers),
        vision_width: args.vision_width.unwrap_or(d.vision_width),
        vision_patch_size: args.patch_size.unwrap_or(d.vision_patch_size),
        context_length: args.context_length.unwrap_or(d.context_length),
        transformer_width: args.text_width.unwrap_or(d.transformer_width),
        transformer_layers: args.text_layers.unwrap_or(d.transformer_layers),
        vocab_size: args.vocab_size.unwrap_or(d.vocab_size),
        tokenizer: args.tokenizer.clone(),
        init_logit_scale: d.init_logit_scale,
    }
}

/// S2MTS2's settings for `--method s2mts2` (the defaults with the flags'
/// overrides); the flags are refused with other methods.
pub(super) fn s2mts2_settings(args: &Args) -> Result<Option<S2mts2Settings>> {
    if args.method != "s2mts2" {
        if args.keys.is_some() || args.jcl_lambda.is_some() || args.reference_head {
            bail!("--keys, --jcl-lambda and --reference-head are S2MTS2's; use --method s2mts2");
        }
        return Ok(None);
    }
    let d = S2mts2Settings::default();
    Ok(Some(S2mts2Settings {
        keys: args.keys.unwrap_or(d.keys),
        lambda: args.jcl_lambda.unwrap_or(d.lambda),
        reference_head: args.reference_head,
    }))
}

/// REFERS' settings for `--method refers` (the defaults for the ViT's
/// width with the flags' overrides; `--hflip` is the paired image + caption
/// flip, done by the objective); the flags are refused with other methods.
pub(super) fn refers_settings(args: &Args, spec: &ModelSpec) -> Result<Option<RefersSettings>> {
    if args.method != "refers" {
        if args.refers_lambda.is_some()
            || args.refers_temperature.is_some()
            || args.refers_detach_t2i
            || args.vit_dropout.is_some()
        {
            bail!(
                "--refers-lambda, --refers-temperature, --refers-detach-t2i and --vit-dropout are \
                 REFERS'; use --method refers"
            );
        }
        return Ok(None);
    }
    let d = RefersSettings::for_width(spec.feature_dim());
    Ok(Some(RefersSettings {
        lambda: args.refers_lambda.unwrap_or(d.lambda),
        temperature: args.refers_temperature.unwrap_or(d.temperature),
        detach_t2i: args.refers_detach_t2i,
        flip: f64::from(args.hflip),
        max_len: args.context_length.map_or(d.max_len, |n| n.max(0) as usize),
        caption_vocab: args.vocab_size.unwrap_or(d.caption_vocab),
        pooling: text_pooling(args, d.pooling),
        dropout: match args.vit_dropout {
            Some(p) if !(0.0..1.0).contains(&p) => {
                bail!("--vit-dropout must be in [0, 1), got {p}")
            }
            Some(p) => p,
            None => d.dropout,
        },
        ..d
    }))
}

/// `--text-pooling`, or `default` without it.
fn text_pooling(args: &Args, default: Pooling) -> Pooling {
    match args.text_pooling.as_deref() {
        None => default,
        Some("cls") => Pooling::Cls,
        Some("pooler") => Pooling::Pooler,
        Some("max") => Pooling::Max,
        Some(_) => Pooling::Mean,
    }
}

/// The BERT of `d` with the text flags' overrides.
fn bert_settings(args: &Args, d: BertSettings) -> BertSettings {
    BertSettings {
        layers: args.text_layers.unwrap_or(d.layers),
        hidden: args.text_width.unwrap_or(d.hidden),
        heads: args.text_heads.unwrap_or(d.heads),
        intermediate: args.text_ffn.unwrap_or(d.intermediate),
        context_length: args.context_length.unwrap_or(d.context_length),
        vocab_size: args.vocab_size.unwrap_or(d.vocab_size),
        tokenizer: args.tokenizer.clone(),
        freeze_layers: args.freeze_text_layers.or(d.freeze_layers),
    }
}

/// ConVIRT's settings for `--method convirt` (the defaults for the input
/// size with the flags' overrides); its flags are refused elsewhere.
pub(super) fn convirt_settings(args: &Args, size: i64) -> Result<Option<ConvirtSettings>> {
    if args.method != "convirt" {
        if args.convirt_lambda.is_some()
            || args.convirt_temperature.is_some()
            || args.image_to_text_only
            || args.mask_duplicate_texts
        {
            bail!(
                "--convirt-lambda, --convirt-temperature, --image-to-text-only and \
                 --mask-duplicate-texts are ConVIRT's; use --method convirt"
            );
        }
        if args.text_pooling.is_some() && args.method != "refers" {
            bail!("--text-pooling is ConVIRT's and REFERS'; use --method convirt or refers");
        }
        return Ok(None);
    }
    let d = ConvirtSettings::for_size(size);
    let pooling = text_pooling(args, d.pooling);
    Ok(Some(ConvirtSettings {
        text: bert_settings(args, d.text.clone()),
        pooling,
        dim: args.embed_dim.unwrap_or(d.dim),
        temperature: args.convirt_temperature.unwrap_or(d.temperature),
        lambda: args.convirt_lambda.unwrap_or(d.lambda),
        image_to_text_only: args.image_to_text_only,
        mask_duplicate_texts: args.mask_duplicate_texts,
    }))
}

/// GLoRIA's settings for `--method gloria` (the defaults for the input
/// size with the flags' overrides); its flags are refused elsewhere.
pub(super) fn gloria_settings(args: &Args, size: i64) -> Result<Option<GloriaSettings>> {
    if args.method != "gloria" {
        if args.gloria_gammas.is_some()
            || args.single_softmax
            || args.gloria_upsample.is_some()
            || args.lesion_masks.is_some()
        {
            bail!(
                "--gloria-gammas, --single-softmax, --gloria-upsample and --lesion-masks are \
                 GLoRIA's; use --method gloria"
            );
        }
        return Ok(None);
    }
    let d = GloriaSettings::for_size(size);
    let gammas = match args.gloria_gammas.as_deref() {
        None => d.gammas,
        Some(&[attention, words, logits]) => Gammas {
            attention,
            words,
            logits,
        },
        Some(_) => bail!("--gloria-gammas takes three values, γ1,γ2,γ3"),
    };
    Ok(Some(GloriaSettings {
        text: bert_settings(args, d.text.clone()),
        gammas,
        single_softmax: args.single_softmax,
        upsample: args.gloria_upsample.or(d.upsample),
        lesion_masks: match &args.lesion_masks {
            Some(p) => Some(
                p.canonicalize()
                    .with_context(|| format!("--lesion-masks {}", p.display()))?,
            ),
            None => None,
        },
        ..d
    }))
}

/// ConVIRT's augmentation (docs/ssl-methods.md (ConVIRT)) as far as [`Augment`] expresses it: a
/// square crop of side fraction 0.6-1 (area 0.36-1, drawn uniform in area
/// rather than in side), rotation ±20° (no translation or scaling), flip
/// 0.5 with the text unchanged, brightness and contrast 0.4, blur with
/// p 0.95 and σ 0.1-3 px scaled from 224 px to the input size. The
/// reference applies crop, affine and jitter each with p 0.95; here always.
pub(super) fn convirt_augment(size: usize) -> Augment {
    let px = size as f32 / 224.0;
    Augment {
        crop_scale: (0.36, 1.0),
        crop_ratio: (1.0, 1.0),
        rotation_deg: 20.0,
        brightness: 0.4,
        contrast: 0.4,
        hflip: 0.5,
        blur_sigma: (0.1 * px, 3.0 * px),
        blur_p: 0.95,
        ..Augment::none(size, size)
    }
}

/// GLoRIA's augmentation (docs/ssl-methods.md (GLoRIA)): a random square crop of 224/256 of the
/// side at a random position, resized back to the input size (the
/// reference crops 224 of 256 and upsamples to 299 in the model); no flip,
/// affine or jitter.
pub(super) fn gloria_augment(size: usize) -> Augment {
    let side: f32 = 224.0 / 256.0;
    Augment {
        crop_scale: (side * side, side * side),
        crop_ratio: (1.0, 1.0),
        ..Augment::none(size, size)
    }
}

/// GLoRIA's "half" normalisation (mean 0.5, std 0.5).
pub(super) const HALF: Normalization = Normalization {
    mean: [0.5; 3],
    std: [0.5; 3],
};

/// The schedule and validation: `--schedule` (default: the plateau
/// schedule for convirt and gloria, as their papers train, cosine for the
/// rest) and the validation settings (a held-out share whenever the
/// plateau schedule, early stopping or `--val-fraction` asks for one;
/// ConVIRT validates every 5,000 steps, GLoRIA every epoch and stops
/// after 10 evaluations without a better loss).
pub(super) fn schedule_and_validation(args: &Args) -> Result<(Shape, Option<Validation>)> {
    let paper_plateau = ["convirt", "gloria"].contains(&args.method.as_str());
    let shape = match args.schedule.as_deref() {
        None if paper_plateau => Shape::Plateau,
        None | Some("cosine") => Shape::Cosine,
        Some("constant") => Shape::Constant,
        Some(_) => Shape::Plateau,
    };
    let early_stop = args
        .early_stop
        .or((args.method == "gloria" && shape == Shape::Plateau).then_some(10));
    let wanted = shape == Shape::Plateau || early_stop.is_some() || args.val_fraction.is_some();
    if !wanted {
        if args.val_every.is_some()
            || args.plateau_factor.is_some()
            || args.plateau_patience.is_some()
        {
            bail!(
                "--val-every, --plateau-factor and --plateau-patience need validation: set --val-fraction or --schedule plateau"
            );
        }
        return Ok((shape, None));
    }
    if shape != Shape::Plateau && (args.plateau_factor.is_some() || args.plateau_patience.is_some())
    {
        bail!("--plateau-factor and --plateau-patience go with --schedule plateau");
    }
    let plateau = (shape == Shape::Plateau).then(|| Plateau {
        factor: args.plateau_factor.unwrap_or(0.5),
        patience: args.plateau_patience.unwrap_or(5),
        min_lr: if args.method == "convirt" { 1e-8 } else { 0.0 },
    });
    let validation = Validation {
        fraction: args.val_fraction.unwrap_or(0.05),
        every: args
            .val_every
            .unwrap_or(if args.method == "convirt" { 5000 } else { 0 }),
        plateau,
        early_stop,
    };
    validation.validate().map_err(anyhow::Error::msg)?;
    Ok((shape, Some(validation)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(extra: &[&str]) -> Result<(Shape, Option<Validation>)> {
        let base = ["cxrlearn", "--data", "d", "--out", "o"];
        let cli = Cli::try_parse_from(base.iter().chain(extra)).unwrap();
        schedule_and_validation(&cli.args)
    }

    #[test]
    fn the_papers_schedules_by_default() {
        let (shape, v) = parse(&["--method", "convirt"]).unwrap();
        let v = v.unwrap();
        assert_eq!(shape, Shape::Plateau);
        assert_eq!((v.fraction, v.every, v.early_stop), (0.05, 5000, None));
        assert_eq!(
            v.plateau,
            Some(Plateau {
                factor: 0.5,
                patience: 5,
                min_lr: 1e-8
            })
        );
        let (shape, v) = parse(&["--method", "gloria"]).unwrap();
        let v = v.unwrap();
        assert_eq!(shape, Shape::Plateau);
        assert_eq!((v.every, v.early_stop), (0, Some(10)));
        assert_eq!(
            parse(&["--method", "moco-cxr"]).unwrap(),
            (Shape::Cosine, None)
        );
        assert_eq!(
            parse(&["--method", "gloria", "--schedule", "cosine"]).unwrap(),
            (Shape::Cosine, None)
        );
        // Validation without the plateau: the best encoder, early stopping.
        let (shape, v) = parse(&["--method", "clip", "--early-stop", "4"]).unwrap();
        assert_eq!(shape, Shape::Cosine);
        assert_eq!(v.unwrap().early_stop, Some(4));
    }

    #[test]
    fn validation_flags_without_validation_are_refused() {
        for extra in [
            &["--method", "moco-cxr", "--val-every", "10"][..],
            &["--method", "moco-cxr", "--plateau-patience", "2"],
            &[
                "--method",
                "clip",
                "--val-fraction",
                "0.1",
                "--plateau-factor",
                "0.1",
            ],
            &["--method", "convirt", "--val-fraction", "0.9"],
            &["--method", "convirt", "--plateau-factor", "1.5"],
        ] {
            assert!(parse(extra).is_err(), "{extra:?}");
        }
    }

    fn args(extra: &[&str]) -> Args {
        let base = ["cxrlearn", "--data", "d", "--out", "o"];
        Cli::try_parse_from(base.iter().chain(extra)).unwrap().args
    }

    fn vit() -> ModelSpec {
        ModelSpec::scratch("vit-tiny", 64, None).unwrap()
    }

    #[test]
    fn refers_text_pooling_and_dropout() {
        let d = refers_settings(&args(&["--method", "refers"]), &vit())
            .unwrap()
            .unwrap();
        assert_eq!((d.pooling, d.dropout), (Pooling::Pooler, 0.1));
        let a = args(&[
            "--method",
            "refers",
            "--text-pooling",
            "mean",
            "--vit-dropout",
            "0",
        ]);
        let s = refers_settings(&a, &vit()).unwrap().unwrap();
        assert_eq!((s.pooling, s.dropout), (Pooling::Mean, 0.0));
        assert!(
            refers_settings(&args(&["--method", "refers", "--vit-dropout", "1"]), &vit()).is_err()
        );
        // Each method's flags are refused by the others.
        let e = refers_settings(&args(&["--method", "clip", "--vit-dropout", "0"]), &vit());
        assert!(e.unwrap_err().to_string().contains("--vit-dropout"));
        let e = convirt_settings(&args(&["--method", "clip", "--text-pooling", "cls"]), 64);
        assert!(e.unwrap_err().to_string().contains("--text-pooling"));
        let refers = args(&["--method", "refers", "--text-pooling", "cls"]);
        assert!(convirt_settings(&refers, 64).unwrap().is_none());
        let e = gloria_settings(
            &args(&["--method", "convirt", "--lesion-masks", "x.csv"]),
            64,
        );
        assert!(e.unwrap_err().to_string().contains("--lesion-masks"));
        let e = gloria_settings(
            &args(&["--method", "gloria", "--lesion-masks", "/nonexistent.csv"]),
            64,
        );
        assert!(e.unwrap_err().to_string().contains("/nonexistent.csv"));
    }
}
