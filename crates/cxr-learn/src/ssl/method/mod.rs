//! The pretraining methods, one descriptor each in its own file: its name,
//! the flags it reads (its own group, a [`clap::Args`] struct in its file,
//! and the shared ones it lists), its defaults (optimiser, schedule,
//! augmentation, positive pairs, normalisation), its phantom-scale recipe
//! and how its objective is built. [`METHODS`] is the one list: the CLI's
//! `--method` values, `cxrlearn methods`, the demo, `scripts/ssl-check.sh`
//! and the tests all read it. Adding a method is a file here, its line in
//! [`METHODS`] and its flag group in [`Flags`].
//!
//! [`resolve`] turns the flags into a [`PretrainConfig`] and the model to
//! train, every default decided once on typed values.

mod clip;
mod convirt;
mod flags;
mod gloria;
mod medaug;
mod moco_cxr;
mod refers;
mod resolve;
mod s2mts2;

use cxr_data::store::read::Store;
use cxr_nn::spec::ModelSpec;
use tch::Device;

pub use clip::ClipFlags;
pub use convirt::ConvirtFlags;
pub use flags::{Flags, MocoFlags, TextFlags, ViewFlags};
pub use gloria::GloriaFlags;
pub use refers::RefersFlags;
pub use resolve::{Resolved, resolve};
pub use s2mts2::S2mts2Flags;

use super::{Objective, Positive, PretrainConfig};
use crate::error::{Error, Result};
use crate::schedule::Shape;
use crate::ssl::text_side::{BertSettings, Pooling};

/// One self-supervised method.
pub struct Method {
    /// The `--method` value.
    pub name: &'static str,
    /// The name its paper uses.
    pub title: &'static str,
    /// One line on what it learns from, for `--help` and `cxrlearn methods`.
    pub about: &'static str,
    /// Whether it learns from the store's reports too.
    pub image_text: bool,
    /// Whether it trains on the momentum-contrast engine (its queue must
    /// hold a whole number of batches).
    pub queue: bool,
    /// The flags of the shared groups it reads (long names without
    /// dashes), in lists; the flags of [`Flags`]' top level are every
    /// method's.
    pub reads: &'static [&'static [&'static str]],
    /// Its own flag group (`augment_args` of its struct; none: identity).
    pub own_flags: fn(clap::Command) -> clap::Command,
    /// Its defaults where they differ by method.
    pub defaults: Defaults,
    /// Its positive pairs: the default and the `--positive` values it takes.
    pub positive: PositiveRule,
    /// Its phantom-scale settings (flag, value; an empty value is a switch):
    /// what the demo, `scripts/ssl-check.sh` and the tests train with on
    /// 64 px phantom images (docs/ssl-methods.md, Phantom-scale
    /// configurations). The run's length (`--epochs`) is the caller's.
    pub recipe: &'static [&'static [(&'static str, &'static str)]],
    /// Its network and the resolved backbone name, from the flags and the
    /// input side.
    pub model: ModelFn,
    /// Fills its own settings in `config` from the flags.
    pub configure: fn(&Flags, &ModelSpec, &mut PretrainConfig) -> Result<()>,
    /// Builds its objective.
    pub build: Builder,
}

/// A method's network and its backbone's name, from the flags and the
/// input side.
pub type ModelFn = fn(&Flags, i64) -> Result<(ModelSpec, String)>;

/// What builds a method's objective from the resolved run.
pub type Builder = fn(&PretrainConfig, &ModelSpec, &Store, Device) -> Result<Box<dyn Objective>>;

/// The defaults in which methods differ.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    /// Adam's β1.
    pub adam_beta1: f64,
    /// The schedule without `--schedule`.
    pub schedule: Shape,
    /// Validate every this many steps (0: at each epoch's end).
    pub val_every: u64,
    /// The plateau schedule's floor.
    pub min_lr: f64,
    /// Early stopping with the plateau schedule, in evaluations.
    pub early_stop_on_plateau: Option<usize>,
    /// How its views are augmented.
    pub augment: AugmentRule,
}

impl Defaults {
    /// AdamW with β1 0.9, the cosine schedule, views from the flags.
    pub const IMAGE: Self = Self {
        adam_beta1: 0.9,
        schedule: Shape::Cosine,
        val_every: 0,
        min_lr: 0.0,
        early_stop_on_plateau: None,
        augment: AugmentRule::Flags,
    };
}

/// How a method's training images are augmented.
#[derive(Debug, Clone, Copy)]
pub enum AugmentRule {
    /// From the view flags ([`ViewFlags`]).
    Flags,
    /// From the view flags, but the flip is the objective's (REFERS flips
    /// the image and swaps "left"/"right" in the caption together).
    FlagsFlipInObjective,
    /// None (CheXzero trains without augmentation).
    Never,
    /// The method's own, for an input side; `--no-augment` turns it off.
    Own(fn(usize) -> cxr_data::augment::Augment),
}

/// A method's positive pairs.
#[derive(Debug, Clone, Copy)]
pub struct PositiveRule {
    /// Without `--positive`.
    pub default: Positive,
    /// The `--positive` values it takes.
    pub accepts: &'static [Positive],
    /// Why another value is refused (`{}` stands for the value).
    pub refusal: &'static str,
}

/// Every method, in the order of the paper's tables.
pub static METHODS: [&Method; 7] = [
    &moco_cxr::METHOD,
    &medaug::METHOD,
    &s2mts2::METHOD,
    &convirt::METHOD,
    &gloria::METHOD,
    &clip::METHOD,
    &refers::METHOD,
];

/// The methods' names, in [`METHODS`]' order.
pub fn names() -> Vec<&'static str> {
    METHODS.iter().map(|m| m.name).collect()
}

/// The method named `name`.
///
/// # Errors
/// [`Error::UnknownMethod`], listing the names.
pub fn lookup(name: &str) -> Result<&'static Method> {
    METHODS
        .iter()
        .copied()
        .find(|m| m.name == name)
        .ok_or_else(|| Error::UnknownMethod { name: name.into() })
}

/// `--method`'s long help: every method with its line.
fn method_help() -> String {
    let mut s = "The pretraining method:\n".to_owned();
    for m in METHODS {
        s.push_str(&format!("  {} ({}): {}\n", m.name, m.title, m.about));
    }
    s
}

/// `--backbone`: every method's but CLIP's, whose ViT is its own
/// (`--vision-layers` and neighbours).
pub const BACKBONE: &[&str] = &["backbone"];

/// The momentum-contrast engine's flags ([`MocoFlags`]).
pub const ENGINE: &[&str] = &[
    "queue",
    "temperature",
    "key-momentum",
    "dim",
    "ghost-batches",
];

/// The view flags ([`ViewFlags`]).
pub const VIEWS: &[&str] = &[
    "positive",
    "hflip",
    "rotation",
    "crop-scale",
    "brightness",
    "contrast",
    "blur-p",
];

/// The BERT text tower's flags ([`TextFlags`]) that ConVIRT and GLoRIA
/// share.
pub const TEXT_TOWER: &[&str] = &[
    "text-lr",
    "tokenizer",
    "context-length",
    "vocab-size",
    "text-layers",
    "text-width",
    "text-heads",
    "text-ffn",
    "freeze-text-layers",
    "no-augment",
];

/// `--text-pooling`, or `default` without it.
fn text_pooling(flags: &Flags, default: Pooling) -> Pooling {
    match flags.text.text_pooling.as_deref() {
        None => default,
        Some("cls") => Pooling::Cls,
        Some("pooler") => Pooling::Pooler,
        Some("max") => Pooling::Max,
        Some(_) => Pooling::Mean,
    }
}

/// The BERT of `d` with the text flags' overrides.
fn bert_settings(flags: &Flags, d: BertSettings) -> BertSettings {
    let t = &flags.text;
    BertSettings {
        layers: t.text_layers.unwrap_or(d.layers),
        hidden: t.text_width.unwrap_or(d.hidden),
        heads: t.text_heads.unwrap_or(d.heads),
        intermediate: t.text_ffn.unwrap_or(d.intermediate),
        context_length: t.context_length.unwrap_or(d.context_length),
        vocab_size: t.vocab_size.unwrap_or(d.vocab_size),
        tokenizer: t.tokenizer.clone(),
        freeze_layers: t.freeze_text_layers.or(d.freeze_layers),
    }
}

impl Method {
    /// Whether it reads the shared flag `flag` (long name, no dashes).
    pub fn reads(&self, flag: &str) -> bool {
        self.reads.iter().any(|list| list.contains(&flag))
    }

    /// The long names (no dashes) of its own flag group.
    pub fn own_flag_names(&self) -> Vec<String> {
        long_names((self.own_flags)(clap::Command::new(self.name)))
    }

    /// Refuses the first of `given` (long flag names without dashes, as
    /// given on the command line) that the method does not read.
    ///
    /// # Errors
    /// [`Error::FlagNotRead`] naming the flag and the methods that read it.
    pub fn check_flags<'a>(&self, given: impl IntoIterator<Item = &'a str>) -> Result<()> {
        let top = top_level_flags();
        let own = self.own_flag_names();
        for flag in given {
            if top.iter().any(|f| f == flag) || own.iter().any(|f| f == flag) || self.reads(flag) {
                continue;
            }
            let owner = METHODS
                .iter()
                .find(|m| m.own_flag_names().iter().any(|f| f == flag));
            let owners = match owner {
                Some(m) => format!(
                    "{} {} {}'s; use --method {}",
                    m.own_flag_names()
                        .iter()
                        .map(|f| format!("--{f}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if m.own_flag_names().len() > 1 {
                        "are"
                    } else {
                        "is"
                    },
                    m.title,
                    m.name
                ),
                None => {
                    let readers: Vec<&str> = METHODS
                        .iter()
                        .filter(|m| m.reads(flag))
                        .map(|m| m.name)
                        .collect();
                    format!("it is read by {}", readers.join(", "))
                }
            };
            return Err(Error::FlagNotRead {
                flag: flag.into(),
                method: self.name,
                owners,
            });
        }
        Ok(())
    }

    /// The recipe's settings, in order (its lists joined).
    pub fn recipe_settings(&self) -> impl Iterator<Item = &'static (&'static str, &'static str)> {
        self.recipe.iter().flat_map(|list| list.iter())
    }

    /// The recipe as command-line words (`--flag value ...`).
    pub fn recipe_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (flag, value) in self.recipe_settings() {
            out.push(format!("--{flag}"));
            if !value.is_empty() {
                out.push((*value).to_owned());
            }
        }
        out
    }
}

/// The long names of a command's arguments.
fn long_names(cmd: clap::Command) -> Vec<String> {
    cmd.get_arguments()
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect()
}

/// The flags every method reads: [`Flags`]' own fields, without the
/// groups flattened into it and without [`BACKBONE`].
fn top_level_flags() -> Vec<String> {
    use clap::Args;
    let grouped: Vec<String> = [
        MocoFlags::augment_args,
        ViewFlags::augment_args,
        TextFlags::augment_args,
    ]
    .into_iter()
    .chain(METHODS.iter().map(|m| m.own_flags))
    .flat_map(|f| long_names(f(clap::Command::new("g"))))
    .collect();
    long_names(Flags::augment_args(clap::Command::new("pretrain")))
        .into_iter()
        .filter(|f| !grouped.contains(f) && !BACKBONE.contains(&f.as_str()))
        .collect()
}

/// The long names of the flags given on the command line in `matches`
/// (defaults and absent flags left out), for [`Method::check_flags`].
pub fn given_flags(matches: &clap::ArgMatches) -> Vec<String> {
    use clap::Args;
    let cmd = Flags::augment_args(clap::Command::new("pretrain"));
    cmd.get_arguments()
        .filter(|a| {
            matches!(
                matches.value_source(a.get_id().as_str()),
                Some(clap::parser::ValueSource::CommandLine)
            )
        })
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests;
