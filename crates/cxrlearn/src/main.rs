//! The `cxrlearn` command line.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod cmd;
#[cfg(test)]
mod doc_links;
mod output;
mod run;

/// Chest X-ray representation learning: self-supervised models, probing,
/// finetuning and evaluation with confidence intervals.
#[derive(Debug, Parser)]
#[command(name = "cxrlearn", version, about, long_about = None)]
struct Cli {
    /// Silence progress output.
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Converts a raw dataset (preset or generic CSV) into a dataset store.
    Convert(cmd::convert::Args),
    /// Prints a dataset store's or a checkpoint's summary, or (--system) what
    /// libtorch and CUDA this binary can use.
    Info(cmd::info::Args),
    /// Lists the model registry: architecture, feature, checkpoint, preprocessing.
    Models(cmd::models::Args),
    /// Lists the self-supervised methods, or prints one's phantom-scale recipe.
    Methods(cmd::methods::Args),
    /// Validates a released checkpoint against the registry and writes safetensors.
    Import(cmd::import::Args),
    /// Extracts and caches frozen features for every split of a store.
    Features(cmd::features::Args),
    /// AUC, bootstrap confidence intervals and a paired comparison against a baseline.
    Evaluate(cmd::evaluate::Args),
    /// Writes a synthetic chest X-ray data set (images, labels, reports, sites).
    Phantom(cmd::phantom::Args),
    /// Finetunes a backbone and a linear head, keeping the best validation epoch.
    Finetune(cmd::finetune::Args),
    /// Scores PNG/JPEG/DICOM files with a finetuned model.
    Predict(cmd::predict::Args),
    /// Self-supervised pretraining on a store's training images.
    // Boxed: its many method flags make it far larger than the others.
    Pretrain(Box<cmd::pretrain::Args>),
    /// Linear probing (L2 logistic regression, L-BFGS) on frozen features.
    Probe(cmd::probe::Args),
    /// Writes nested, seeded, patient-level training subsets into a store
    /// (for label-efficiency curves: probe/finetune --train-fraction).
    Subsets(cmd::subsets::Args),
    /// Zero-shot classification from text prompts with an image-text model.
    #[command(name = "zero-shot")]
    ZeroShot(cmd::zeroshot::Args),
    /// Runs (or emits Slurm jobs for) a grid of datasets x models x strategies
    /// and writes the report; `benchmark report` rebuilds the report.
    Benchmark(cmd::benchmark::Args),
    /// The whole system on phantom data: pretraining, a supervised
    /// out-of-domain baseline, probing and finetuning at two sites, the report.
    Demo(cmd::demo::Args),
}

fn main() -> ExitCode {
    // Large tensors reuse freed heap pages instead of being mapped and
    // faulted in afresh on every batch (cxr_nn::allocator).
    cxr_nn::allocator::keep_freed_tensor_memory();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Command::Convert(args) => cmd::convert::run(&args, cli.quiet),
        Command::Info(args) => cmd::info::run(&args),
        Command::Models(args) => cmd::models::run(&args),
        Command::Methods(args) => cmd::methods::run(&args),
        Command::Import(args) => cmd::import::run(&args, cli.quiet),
        Command::Features(args) => cmd::features::run(&args, cli.quiet),
        Command::Evaluate(args) => cmd::evaluate::run(&args, cli.quiet),
        Command::Phantom(args) => cmd::phantom::run(&args, cli.quiet),
        Command::Finetune(args) => cmd::finetune::run(&args, cli.quiet),
        Command::Predict(args) => cmd::predict::run(&args, cli.quiet),
        Command::Pretrain(mut args) => {
            // Which flags were typed, not defaulted: the method refuses
            // those it does not read.
            if let Some(m) = matches.subcommand_matches("pretrain") {
                args.given = cmd::pretrain::given(m);
            }
            cmd::pretrain::run(&args, cli.quiet)
        }
        Command::Probe(args) => cmd::probe::run(&args, cli.quiet),
        Command::Subsets(args) => cmd::subsets::run(&args, cli.quiet),
        Command::ZeroShot(args) => cmd::zeroshot::run(&args, cli.quiet),
        Command::Benchmark(args) => cmd::benchmark::run(&args, cli.quiet),
        Command::Demo(args) => cmd::demo::run(&args, cli.quiet),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
