//! `cxrlearn convert`: a raw dataset (preset or generic CSV) -> dataset store.

use std::path::PathBuf;

use anyhow::{Result, bail};
use cxr_data::convert::{ConvertOptions, convert};
use cxr_data::csv_source::{CsvSpec, read_generic};
use cxr_data::labels::Task;
use cxr_data::preprocess::ResizePolicy;
use cxr_data::{presets, splits};

use crate::cmd::common_args::DecodeArgs;

/// `--preset`'s help: every name of the preset table.
fn preset_help() -> String {
    format!("Dataset preset: {}.", presets::NAMES.join(", "))
}

/// `--size`'s help: the maximum comes from the data crate's constant.
fn size_help() -> String {
    format!(
        "Side of the square stored images, 1 to {} pixels.",
        cxr_data::convert::MAX_IMAGE_SIZE
    )
}

/// Arguments of `cxrlearn convert`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Dataset preset (the names come from the preset table).
    #[arg(long, conflicts_with = "csv", requires = "root", help = preset_help())]
    pub preset: Option<String>,
    /// The dataset as its publisher distributes it.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Generic label CSV (instead of --preset).
    #[arg(long, requires_all = ["image_root", "path_column", "label_columns", "task"])]
    pub csv: Option<PathBuf>,
    /// Directory the CSV's image paths are relative to.
    #[arg(long)]
    pub image_root: Option<PathBuf>,
    /// CSV column with image paths.
    #[arg(long)]
    pub path_column: Option<String>,
    /// CSV label columns, comma-separated (one for multiclass).
    #[arg(long, value_delimiter = ',')]
    pub label_columns: Vec<String>,
    /// Task type of the CSV: binary, multilabel or multiclass.
    #[arg(long)]
    pub task: Option<Task>,
    /// CSV column with patient ids (patient-disjoint splits).
    #[arg(long)]
    pub patient_column: Option<String>,
    /// CSV column with fixed splits (train/val/test).
    #[arg(long)]
    pub split_column: Option<String>,
    /// Output store directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing non-empty --out.
    #[arg(long)]
    pub force: bool,
    /// Parse labels, patients and splits only; read no image.
    #[arg(long)]
    pub labels_only: bool,
    /// Side of the square stored images (the maximum comes from the data crate).
    #[arg(long, default_value_t = 224, help = size_help())]
    pub size: u32,
    /// Resize policy: squash (the original's), letterbox or center-crop.
    #[arg(long, default_value = "squash")]
    pub resize: ResizePolicy,
    /// Seed of the splits and few-shot draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Train/val/test percentages (default: the paper's rule for the preset, else 60,20,20).
    #[arg(long)]
    pub splits: Option<String>,
    /// Keep K training images per class (K >= 1).
    #[arg(long)]
    pub few_shot: Option<usize>,
    /// Decoding threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub decode: DecodeArgs,
}

/// Runs `convert`.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    // The options are checked before the label files are read (a preset's
    // can take minutes), and so before the output is touched.
    let mut opts = ConvertOptions::new(&args.out);
    opts.force = args.force;
    opts.size = args.size;
    opts.resize = args.resize;
    opts.seed = args.seed;
    opts.fractions = args
        .splits
        .as_deref()
        .map(splits::parse_fractions)
        .transpose()?;
    opts.labels_only = args.labels_only;
    opts.few_shot = args.few_shot;
    opts.quiet = quiet;
    opts.limits = args.decode.limits()?;
    opts.validate()?;
    let (table, root, kind) = match (&args.preset, &args.csv) {
        (Some(name), None) => {
            let root = args.root.clone().unwrap_or_default();
            (presets::load(name, &root)?, root, name.clone())
        }
        (None, Some(csv)) => {
            let spec = CsvSpec {
                csv: csv.clone(),
                path_column: args.path_column.clone().unwrap_or_default(),
                label_columns: args.label_columns.clone(),
                task: args.task.unwrap_or(Task::Multilabel),
                patient_column: args.patient_column.clone(),
                split_column: args.split_column.clone(),
            };
            (
                read_generic(&spec)?,
                args.image_root.clone().unwrap_or_default(),
                "csv".to_string(),
            )
        }
        _ => bail!("give either --preset NAME --root DIR or --csv FILE (see --help)"),
    };
    let summary = match args.threads {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build()?
            .install(|| convert(&table, &root, &kind, &opts))?,
        None => convert(&table, &root, &kind, &opts)?,
    };
    let m = &summary.meta;
    // The summary is progress, not a warning: --quiet silences it (the
    // skipped-images note below still shows, as something to act on).
    if !quiet {
        println!(
            "wrote {}: {} images (train {}, val {}, test {}), {} labels, {} skipped",
            summary.out.display(),
            m.splits.values().sum::<usize>(),
            m.splits["train"],
            m.splits["val"],
            m.splits["test"],
            m.labels.len(),
            summary.skipped.len()
        );
    }
    if !summary.skipped.is_empty() {
        println!(
            "unreadable images are listed in {}",
            summary.out.join("skipped.csv").display()
        );
    }
    Ok(())
}
