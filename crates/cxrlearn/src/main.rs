//! The `cxrlearn` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod output;

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
    /// AUC, bootstrap confidence intervals and a paired comparison against a baseline.
    Evaluate(cmd::evaluate::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Evaluate(args) => cmd::evaluate::run(&args, cli.quiet),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
