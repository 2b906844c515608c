//! `cxrlearn import`: validates a released checkpoint against a registry entry
//! and writes it as the project's safetensors, with a JSON sidecar that records
//! the source and every mapping applied.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cxr_learn::model;
use cxr_nn::checkpoint::{self, Container};
use cxr_nn::encoder::Encoder;
use cxr_nn::tch::Device;
use cxr_nn::{import, registry};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::output::{claim_file, write_atomic};

/// Arguments of `cxrlearn import`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Registry name of the model (see `cxrlearn models`), or hf:DIR /
    /// open_clip:DIR (a publisher's model directory, no --checkpoint).
    #[arg(long)]
    pub model: String,
    /// The released checkpoint (.pt, .pth, .pth.tar, .ckpt or .safetensors),
    /// or the publisher's directory for models released as one.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Output safetensors file; a JSON sidecar is written beside it.
    #[arg(long)]
    pub out: PathBuf,
    /// Overwrite existing output files.
    #[arg(long)]
    pub force: bool,
}

/// Runs the subcommand.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    let sidecar = args.out.with_extension("json");
    // The weights and their sidecar are one output: claimed together (two
    // imports at once cannot leave one's weights beside the other's
    // sidecar), each refused when present unless --force.
    let _claim = claim_file(&args.out, args.force)?;
    claim_file(&sidecar, args.force)?;
    let is_dir = args.checkpoint.as_ref().is_some_and(|c| c.is_dir());
    if is_dir || args.model.starts_with("hf:") || args.model.starts_with("open_clip:") {
        return import_dir(args, &sidecar, quiet);
    }
    let entry = registry::find(&args.model).map_err(anyhow::Error::msg)?;
    let file = args.checkpoint.as_ref().with_context(|| {
        format!(
            "'{}' needs --checkpoint (its weights, {})",
            entry.name, entry.checkpoint_file
        )
    })?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let ck = checkpoint::parse(&bytes).with_context(|| format!("{}", file.display()))?;
    let imported = import::import(&entry, &ck)
        .with_context(|| format!("{} as '{}'", file.display(), entry.name))?;
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
            "path": file.display().to_string(),
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

/// Imports a publisher's directory: the configuration decides the
/// architecture, the image encoder's tensors are loaded strictly, and the
/// sidecar records the shape (so the file is a model on its own) and the
/// source files' hashes.
fn import_dir(args: &Args, sidecar: &Path, quiet: bool) -> Result<()> {
    let resolved = model::resolve(&args.model, args.checkpoint.as_deref(), 0, None, None)?;
    let dir = resolved
        .dir
        .as_ref()
        .context("only publisher directories are imported this way")?;
    let tensors = resolved.load()?.unwrap_or_default();
    // Proves every weight is accounted for before anything is written.
    Encoder::new(resolved.spec.clone(), &tensors, Device::Cpu)
        .map_err(|m| anyhow::anyhow!("{}: {m}", resolved.source))?;
    let mut files = serde_json::Map::new();
    for f in dir.files() {
        files.insert(
            f.display().to_string(),
            json!(cxr_learn::features::sha256_file(&f)?),
        );
    }
    let mut report = resolved.spec.sidecar();
    report["architecture_description"] = json!(resolved.spec.architecture.describe());
    report["feature_dim"] = json!(resolved.spec.feature_dim());
    report["source"] = json!({"directory": dir.dir.display().to_string(), "format": dir.format.title(), "sha256": files});
    report["tensors"] = json!(tensors.len());
    report["cxrlearn_version"] = json!(env!("CARGO_PKG_VERSION"));
    let metadata = HashMap::from([
        ("model".to_owned(), resolved.spec.name.clone()),
        (
            "cxrlearn_version".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
    ]);
    let st = checkpoint::to_safetensors(&tensors, Some(metadata))?;
    write_atomic(&args.out, &st)?;
    write_atomic(
        sidecar,
        (serde_json::to_string_pretty(&report)? + "\n").as_bytes(),
    )?;
    if !quiet {
        eprintln!(
            "imported {} tensors of {} ({}) into {}",
            tensors.len(),
            resolved.source,
            resolved.spec.architecture.describe(),
            args.out.display()
        );
    }
    Ok(())
}
