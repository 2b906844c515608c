//! `cxrlearn pretrain`: self-supervised pretraining on a store's training
//! images. The encoder it writes (`RUN/encoder.safetensors`) is accepted by
//! `features`, `probe` and `finetune` like any registry model.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use cxr_data::store::read::Store;
use cxr_learn::ssl::Pretrainer;
use cxr_learn::ssl::method::{self, Flags};
use cxr_nn::device::DeviceRequest;
use serde_json::json;

use crate::cmd::parallel;
use crate::run::{RunDir, check_resume, log_sink};

/// Arguments of `cxrlearn pretrain`: the run's place here, the training
/// flags in the library ([`Flags`], each method's group in its own file).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Dataset store (its training split is used).
    #[arg(long)]
    pub data: PathBuf,
    /// Run directory.
    #[arg(long)]
    pub out: PathBuf,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceRequest,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    #[command(flatten)]
    pub force: crate::cmd::common_args::ForceArgs,
    /// The method and its training flags.
    #[command(flatten)]
    pub flags: Flags,
    /// The flags given on the command line (filled by [`given`]), which the
    /// method must read.
    #[arg(skip)]
    pub given: Vec<String>,
}

/// The long names of the flags `matches` (this subcommand's) had given.
pub fn given(matches: &clap::ArgMatches) -> Vec<String> {
    method::given_flags(matches)
}

/// Refuses `argv` (`pretrain` flags, no binary name) when clap does or the
/// method does not read one of its flags (the benchmark's check of a
/// grid's recipes before anything runs).
pub(crate) fn check(argv: &[String]) -> Result<()> {
    use clap::{Args as _, FromArgMatches};
    let cmd = Args::augment_args(clap::Command::new("pretrain")).no_binary_name(true);
    let m = cmd.try_get_matches_from(argv)?;
    let args = Args::from_arg_matches(&m)?;
    method::lookup(&args.flags.method)?.check_flags(given(&m).iter().map(String::as_str))?;
    Ok(())
}

/// Runs the subcommand.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    let store = Arc::new(
        Store::open(&args.data)
            .with_context(|| format!("cannot open store {}", args.data.display()))?,
    );
    store.require_pixels()?;
    let r = method::resolve(
        &args.flags,
        args.given.iter().map(String::as_str),
        i64::from(store.meta.image_size[0]),
    )?;
    let resolved = json!({
        "store": args.data.display().to_string(),
        "backbone": r.backbone,
        "input_size": r.input_size,
        "split": "train",
        "training": serde_json::to_value(&r.config)?,
    });
    if args.resume {
        // Before any model work: a run that cannot continue fails at once.
        check_resume(&args.out, "pretrain", &resolved)?;
    }
    let (parallel, device) = parallel::join(args.device)?;
    let run = RunDir::for_rank(
        &args.out,
        parallel.is_main(),
        "pretrain",
        &resolved,
        crate::output::Existing::from_flags(args.force.force, args.resume),
    )?;
    let mut log = log_sink(run.as_ref());
    let mut trainer = Pretrainer {
        store,
        spec: r.spec,
        config: r.config,
        dir: args.out.clone(),
        device,
        log: &mut log,
        verbose: !quiet && parallel.is_main(),
        parallel,
    };
    let outcome = trainer.run(args.resume);
    drop(trainer);
    drop(log);
    let Some(run) = run else {
        return outcome.map_err(Into::into);
    };
    if let Err(e) = outcome {
        if args.out.join("last.safetensors").exists() {
            run.commit();
        }
        return Err(e.into());
    }
    run.log(&json!({"event": "done"}))?;
    run.commit();
    if !quiet {
        eprintln!("wrote {}/encoder.safetensors", args.out.display());
    }
    Ok(())
}
