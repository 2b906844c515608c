//! `cxrlearn import`: validates a released checkpoint against a registry entry
//! and writes it as the project's safetensors, with a JSON sidecar that records
//! the source and every mapping applied.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use cxr_nn::checkpoint::{self, Container};
use cxr_nn::{import, registry};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::output::write_atomic;

/// Arguments of `cxrlearn import`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Registry name of the model (see `cxrlearn models`).
    #[arg(long)]
    pub model: String,
    /// The released checkpoint (.pt, .pth, .pth.tar, .ckpt or .safetensors).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Output safetensors file; a JSON sidecar is written beside it.
    #[arg(long)]
    pub out: PathBuf,
    /// Overwrite existing output files.
    #[arg(long)]
    pub force: bool,
}

/// Runs the subcommand.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    let entry = registry::find(&args.model).map_err(anyhow::Error::msg)?;
    let sidecar = args.out.with_extension("json");
    for path in [&args.out, &sidecar] {
        if path.exists() && !args.force {
            bail!("{} exists (use --force to overwrite)", path.display());
        }
    }
    let bytes = std::fs::read(&args.checkpoint)
        .with_context(|| format!("cannot read {}", args.checkpoint.display()))?;
    let ck = checkpoint::parse(&bytes).with_context(|| format!("{}", args.checkpoint.display()))?;
    let imported = import::import(&entry, &ck)
        .with_context(|| format!("{} as '{}'", args.checkpoint.display(), entry.name))?;
    let sha256 = format!("{:x}", Sha256::digest(&bytes));

    let container = match ck.container {
        Container::TorchZip => "torch zip",
        Container::TorchLegacy => "torch legacy pickle",
        Container::Safetensors => "safetensors",
    };
    let metadata = HashMap::from([
        ("model".to_owned(), entry.name.to_owned()),
        ("source_sha256".to_owned(), sha256.clone()),
        (
            "cxrlearn_version".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
    ]);
    // Batch counters are not weights, but torchvision modules hold them:
    // writing them lets the file load into PyTorch with strict=True.
    let exported = import::with_batch_counters(&imported.tensors, &ck);
    let st = checkpoint::to_safetensors(&exported, Some(metadata))?;
    let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, reason) in &imported.ignored {
        *by_reason.entry(reason).or_default() += 1;
    }
    let report = json!({
        "model": entry.name,
        "architecture": entry.architecture.describe(),
        "feature": entry.feature,
        "feature_dim": entry.feature_dim(),
        "source": {
            "path": args.checkpoint.display().to_string(),
            "sha256": sha256,
            "container": container,
            "tensors": ck.tensors.len(),
        },
        "tensors": imported.tensors.len(),
        "renamed": imported.renamed.iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>(),
        "ignored_by_reason": by_reason,
        "ignored": imported.ignored.iter().map(|(n, r)| json!({"name": n, "reason": r})).collect::<Vec<_>>(),
        "cxrlearn_version": env!("CARGO_PKG_VERSION"),
    });
    write_atomic(&args.out, &st)?;
    write_atomic(
        &sidecar,
        (serde_json::to_string_pretty(&report)? + "\n").as_bytes(),
    )?;
    if !quiet {
        eprintln!(
            "imported {} tensors for '{}' ({} renamed, {} ignored on purpose) into {}",
            imported.tensors.len(),
            entry.name,
            imported.renamed.len(),
            imported.ignored.len(),
            args.out.display()
        );
    }
    Ok(())
}
