//! `cxrlearn phantom`: writes a synthetic chest X-ray data set (images,
//! labels, reports, ground truth) in the raw layout `convert --preset phantom`
//! reads.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cxr_data::phantom::{Finding, Phantom, PhantomConfig, Prevalence};

/// Arguments of `cxrlearn phantom`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output directory (images/, masks/, labels.csv, reports.csv, ground_truth.csv, phantom.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of patients (each has 1 to --max-studies studies, 1 or 2 views each).
    #[arg(long, default_value_t = 200)]
    pub patients: usize,
    /// Side of the square images in pixels.
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Number of acquisition sites (site1 stores MONOCHROME1, i.e. inverted PNGs).
    #[arg(long, default_value_t = 2)]
    pub sites: usize,
    /// Preset of the first site (0: outpatient PA department, 1: intensive-care
    /// portable unit, 2 and above: drawn from the seed); the sites are
    /// FIRST..FIRST+SITES, so one site can be drawn on its own.
    #[arg(long, default_value_t = 0)]
    pub first_site: usize,
    /// Master seed: same seed, same bytes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Prevalence preset: `nih` (ChestX-ray14-like) or `balanced` (0.2 each).
    #[arg(long, default_value = "nih")]
    pub prevalence: String,
    /// Override one prevalence, e.g. `--set Effusion=0.3` (repeatable).
    #[arg(long = "set", value_name = "FINDING=P")]
    pub set: Vec<String>,
    /// Co-occurrence strength of related findings, 0 (independent) to 1.
    #[arg(long, default_value_t = 1.0)]
    pub cooccurrence: f64,
    /// Most studies per patient.
    #[arg(long, default_value_t = 4)]
    pub max_studies: u32,
    /// Replace an existing non-empty --out.
    #[arg(long)]
    pub force: bool,
    /// Rendering threads (default: all cores); the output does not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
}

fn prevalence(args: &Args) -> Result<Prevalence> {
    let mut p = match args.prevalence.as_str() {
        "nih" => Prevalence::nih(),
        "balanced" => Prevalence::balanced(),
        other => bail!("unknown --prevalence {other:?} (expected nih or balanced)"),
    };
    for item in &args.set {
        let (name, value) = item
            .split_once('=')
            .with_context(|| format!("--set {item:?}: expected FINDING=P"))?;
        let f = Finding::from_name(name).with_context(|| {
            let names: Vec<_> = Finding::ALL.iter().map(|f| f.name()).collect();
            format!(
                "--set {item:?}: unknown finding (one of {})",
                names.join(", ")
            )
        })?;
        let v: f64 = value
            .trim()
            .parse()
            .with_context(|| format!("--set {item:?}: {value:?} is not a number"))?;
        p.set(f, v);
    }
    Ok(p)
}

/// Runs `phantom`.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    let config = PhantomConfig {
        seed: args.seed,
        patients: args.patients,
        size: args.size,
        sites: args.sites,
        first_site: args.first_site,
        prevalence: prevalence(args)?,
        cooccurrence: args.cooccurrence,
        max_studies: args.max_studies,
    };
    let start = Instant::now();
    let work = || -> Result<Phantom> {
        let phantom = Phantom::new(config)?;
        let tty = std::io::stderr().is_terminal();
        let last = Mutex::new(Instant::now());
        let progress = |done: usize, total: usize| {
            if quiet {
                return;
            }
            let Ok(mut last) = last.lock() else { return };
            let every = if tty {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(5)
            };
            if done == total || last.elapsed() >= every {
                *last = Instant::now();
                if tty {
                    eprint!("\rphantom: {done}/{total} images");
                    if done == total {
                        eprintln!();
                    }
                } else {
                    eprintln!("phantom: {done}/{total} images");
                }
            }
        };
        phantom.write(&args.out, args.force, &progress)?;
        Ok(phantom)
    };
    let phantom = match args.threads {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build()?
            .install(work)?,
        None => work()?,
    };
    let studies: usize = phantom.patients.iter().map(|p| p.studies.len()).sum();
    let inverted: Vec<&str> = phantom
        .sites
        .iter()
        .filter(|s| s.monochrome1)
        .map(|s| s.name.as_str())
        .collect();
    // The summary is progress, not a warning: --quiet silences it (the
    // MONOCHROME1 note below still shows, since it changes how to read the PNGs).
    if !quiet {
        println!(
            "wrote {}: {} images, {} studies, {} patients, {} sites, {}x{} px in {:.1} s",
            args.out.display(),
            phantom.images.len(),
            studies,
            phantom.patients.len(),
            phantom.sites.len(),
            args.size,
            args.size,
            start.elapsed().as_secs_f64()
        );
    }
    if !inverted.is_empty() {
        println!(
            "note: {} stored as MONOCHROME1 (inverted PNGs); see ground_truth.csv column photometric",
            inverted.join(", ")
        );
    }
    Ok(())
}
