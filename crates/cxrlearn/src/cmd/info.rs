//! `cxrlearn info PATH`: a dataset store's summary, or a checkpoint's
//! (container, tensor count, parameters, dtypes, the tensors themselves);
//! `cxrlearn info --system`: libtorch, its CUDA support, the driver and the
//! devices.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use cxr_data::store::read::Store;

/// Arguments of `cxrlearn info`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A dataset store directory, or a checkpoint file (.pt, .pth, .ckpt, .safetensors).
    #[arg(required_unless_present = "system", conflicts_with = "system")]
    pub store: Option<PathBuf>,
    /// Instead of a store: libtorch's version and directory, whether its CUDA
    /// support is loaded, the CUDA and cuDNN versions it was built with, the
    /// NVIDIA driver and the CUDA devices it sees.
    #[arg(long)]
    pub system: bool,
    /// With --system: print JSON instead of text.
    #[arg(long, requires = "system")]
    pub json: bool,
    /// For a checkpoint: how many tensor names to list (0 for all).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}

fn checkpoint_info(path: &std::path::Path, args: &Args) -> Result<()> {
    use std::collections::BTreeMap;

    let ck = cxr_nn::checkpoint::load(path)?;
    // Checked: a shape read from a file may multiply past 64 bits, and a
    // wrapped count would be printed as if it were true.
    let params = ck.tensors.iter().try_fold(0usize, |sum, (name, t)| {
        t.shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .and_then(|n| sum.checked_add(n))
            .with_context(|| {
                format!(
                    "{}: tensor '{name}' of shape {:?} holds over 2^64 elements",
                    path.display(),
                    t.shape
                )
            })
    })?;
    let mut dtypes: BTreeMap<String, usize> = BTreeMap::new();
    for t in ck.tensors.values() {
        *dtypes.entry(format!("{:?}", t.dtype)).or_default() += 1;
    }
    println!("checkpoint {}", path.display());
    println!("container  {:?}", ck.container);
    println!("tensors    {} ({params} values)", ck.tensors.len());
    let dtypes: Vec<String> = dtypes.iter().map(|(d, n)| format!("{d} x{n}")).collect();
    println!("dtypes     {}", dtypes.join(", "));
    let shown = if args.limit == 0 {
        ck.tensors.len()
    } else {
        args.limit
    };
    for (name, t) in ck.tensors.iter().take(shown) {
        println!("  {name} {:?} {:?}", t.dtype, t.shape);
    }
    if ck.tensors.len() > shown {
        println!(
            "  ... {} more (--limit 0 lists all)",
            ck.tensors.len() - shown
        );
    }
    Ok(())
}

/// Runs `info`.
pub fn run(args: &Args) -> Result<()> {
    let Some(path) = &args.store else {
        let system = cxr_nn::system::SystemInfo::probe();
        if args.json {
            println!("{}", serde_json::to_string_pretty(&system)?);
        } else {
            print!("{}", system.render());
        }
        return Ok(());
    };
    // Said before the store's dataset.json is looked for, which would name
    // that file instead of the path given.
    if let Err(e) = std::fs::metadata(path) {
        bail!("{}: {e}", path.display());
    }
    if path.is_file() {
        return checkpoint_info(path, args);
    }
    let store = Store::open(path)?;
    let m = &store.meta;
    println!("store      {}", path.display());
    println!("name       {} (format v{})", m.name, m.version);
    let task = serde_json::to_value(m.task)?;
    println!(
        "task       {}, {} labels",
        task.as_str().unwrap_or("?"),
        m.labels.len()
    );
    println!(
        "images     {} x [{}, {}] u8{}",
        store.len(),
        m.image_size[0],
        m.image_size[1],
        if m.labels_only {
            " (labels only, no pixels)"
        } else {
            ""
        }
    );
    println!(
        "shards     {} (up to {} images each)",
        m.shards, m.shard_len
    );
    println!(
        "splits     train {}, val {}, test {} ({})",
        m.splits["train"], m.splits["val"], m.splits["test"], m.split_rule.description
    );
    println!(
        "source     {} {} (labels sha256 {})",
        m.source.kind,
        m.source.path,
        &m.source.label_sha256[..16.min(m.source.label_sha256.len())]
    );
    let resize = serde_json::to_value(m.preprocessing.resize)?;
    println!(
        "resize     {}, {}",
        resize.as_str().unwrap_or("?"),
        m.preprocessing.interpolation
    );
    println!("skipped    {}", m.skipped);
    if let Some(k) = m.few_shot {
        println!("few-shot   {k} per class in train");
    }
    // Subgroup attributes (optional manifest columns), one line each.
    for (name, text) in cxr_data::store::summary::SubgroupSummary::of(&store.rows).lines() {
        println!("{name:<10} {text}");
    }
    println!(
        "{:<28} {:>8} {:>8} {:>8}",
        "label (positives)", "train", "val", "test"
    );
    for (k, l) in m.labels.iter().enumerate() {
        let p = |s: &str| {
            m.positives
                .get(s)
                .and_then(|v| v.get(k))
                .copied()
                .unwrap_or(0)
        };
        println!(
            "{:<28} {:>8} {:>8} {:>8}",
            l,
            p("train"),
            p("val"),
            p("test")
        );
    }
    for n in &m.notes {
        println!("note       {n}");
    }
    Ok(())
}
