//! `cxrlearn demo`: the whole system on phantom data, with no arguments.
//!
//! Four phantom worlds are drawn: unlabeled images with their reports from
//! one site for pretraining; two small labeled downstream sets, one from the
//! pretraining site (other patients) and one from a site the pretraining
//! never saw (the distribution-shift test); and an out-of-domain set, a third
//! site labeled only with acquisition metadata (AP portable, lateral view,
//! sex), on which a network is trained supervised as the stand-in for
//! ImageNet pretraining. The benchmark grid then pretrains each method,
//! probes and finetunes every model on both downstream sites against that
//! baseline (with a random-initialisation reference) and writes the report.
//!
//! Every stage writes atomically and is skipped when its output exists, so
//! an interrupted demo continues where it stopped; `DIR/demo.toml` records
//! the plan and a directory holding another plan is refused.

mod plan;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cxr_data::phantom::{Phantom, PhantomConfig, Prevalence};
use serde_json::json;

use crate::output::write_atomic;
use crate::run::{to_toml, versions};
use plan::{CNN, Choices, Plan, World};

/// Arguments of `cxrlearn demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Fewer patients, epochs and methods (moco-cxr and gloria): under 5
    /// minutes on two cores instead of under 20.
    #[arg(long)]
    pub quick: bool,
    /// Output directory [default: runs/demo, or runs/demo-quick with --quick].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Pretraining methods, comma-separated [default: all but refers, which
    /// alone takes as long as the six others; moco-cxr,gloria with --quick].
    #[arg(long, value_delimiter = ',')]
    pub methods: Option<Vec<String>>,
    /// Multiplies every world's patient count (e.g. 0.2 for a smoke run).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Pretraining epochs [default: 12, 8 with --quick].
    #[arg(long)]
    pub pretrain_epochs: Option<u32>,
    /// Finetuning epochs of every finetune cell [default: 30, 25 with --quick].
    #[arg(long)]
    pub finetune_epochs: Option<u32>,
    /// Master seed of the worlds, pretraining, baseline and cells.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(..=MAX_SEED))]
    pub seed: u64,
    /// Cells (and pretraining runs) at once [default: the cores, at most 4].
    #[arg(long)]
    pub jobs: Option<usize>,
}

/// Largest `--seed`: seeds are recorded in demo.toml, whose integers are
/// signed 64-bit, and each world adds its index.
const MAX_SEED: u64 = i64::MAX as u64 - 16;

/// Runs `demo`.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    let started = Instant::now();
    let plan = Plan::new(&Choices {
        quick: args.quick,
        seed: args.seed,
        scale: args.scale,
        methods: args.methods.as_deref(),
        pretrain_epochs: args.pretrain_epochs,
        finetune_epochs: args.finetune_epochs,
    })?;
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(if args.quick {
            "runs/demo-quick"
        } else {
            "runs/demo"
        })
    });
    let out = std::path::absolute(&out)?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(4)));
    if jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    // Held to the end: a second demo into the same directory fails at once
    // (a demo resumes its own stages, it does not share them).
    let _claim = cxr_data::claim::Claim::acquire(&out, cxr_data::claim::Wait::No, |_| {})?;
    claim(&out, &plan)?;
    let demo = Demo {
        plan,
        log: out.join("demo.log"),
        out,
    };
    let say = |m: &str| {
        if !quiet {
            eprintln!("demo: {m}");
        }
    };
    say(&format!(
        "{} into {} ({} jobs; log: demo.log)",
        if demo.plan.quick {
            "quick run"
        } else {
            "full run"
        },
        demo.out.display(),
        jobs
    ));

    let t = Instant::now();
    for w in &demo.plan.worlds {
        demo.world(w)?;
    }
    say(&format!(
        "phantom worlds drawn ({:.0} s)",
        t.elapsed().as_secs_f64()
    ));
    let t = Instant::now();
    demo.stores()?;
    say(&format!(
        "stores written ({:.0} s)",
        t.elapsed().as_secs_f64()
    ));
    let t = Instant::now();
    let baseline = demo.baseline()?;
    say(&format!(
        "out-of-domain supervised baseline trained ({:.0} s)",
        t.elapsed().as_secs_f64()
    ));

    let grid = demo.out.join("grid.toml");
    write_atomic(&grid, demo.plan.grid(&demo.out, &baseline)?.as_bytes())?;
    say(&format!(
        "benchmark: {} pretraining run(s), then {} cells",
        demo.plan.methods.len(),
        2 * 2 * (demo.plan.methods.len() + 2)
    ));
    crate::cmd::benchmark::run(
        &crate::cmd::benchmark::Args {
            action: None,
            config: Some(grid),
            out: Some(demo.out.clone()),
            jobs,
            emit_slurm: None,
            task_index: None,
        },
        quiet,
    )?;
    let report = demo.out.join("report.md");
    if !quiet && let Ok(text) = fs::read_to_string(&report) {
        print_table2(&text);
    }
    println!(
        "demo finished in {:.1} min: report {} (also report.md, report.json, figures/)",
        started.elapsed().as_secs_f64() / 60.0,
        demo.out.join("report.html").display()
    );
    Ok(())
}

/// Records the plan in `DIR/demo.toml`, or checks that the directory holds
/// the same plan (then finished stages are reused).
fn claim(out: &Path, plan: &Plan) -> Result<()> {
    let path = out.join("demo.toml");
    let text = to_toml(&json!({
        "command": "demo",
        "versions": versions(),
        "demo": serde_json::to_value(plan)?,
    }))?;
    match fs::read_to_string(&path) {
        Ok(old) => {
            let old_plan: Option<Plan> = toml::from_str::<toml::Table>(&old)
                .ok()
                .and_then(|mut t| t.remove("demo"))
                .and_then(|d| d.try_into().ok());
            if old_plan.as_ref() != Some(plan) {
                bail!(
                    "{} holds a demo with other settings ({}); choose another --out or delete it",
                    out.display(),
                    path.display()
                );
            }
            Ok(())
        }
        Err(_) => {
            if out.exists() && fs::read_dir(out)?.next().is_some() {
                bail!(
                    "{} exists and is not a demo directory (no demo.toml); choose another --out",
                    out.display()
                );
            }
            fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
            write_atomic(&path, text.as_bytes())
        }
    }
}

struct Demo {
    plan: Plan,
    out: PathBuf,
    /// `DIR/demo.log`: the children's output.
    log: PathBuf,
}

impl Demo {
    fn data(&self, name: &str) -> PathBuf {
        self.out.join("data").join(name)
    }

    /// Draws one world into `data/raw-<name>` (renamed into place whole).
    fn world(&self, w: &World) -> Result<()> {
        let dir = self.data(&format!("raw-{}", w.name));
        if dir.join("phantom.json").exists() {
            return Ok(());
        }
        let config = PhantomConfig {
            seed: w.seed,
            patients: w.patients,
            size: self.plan.render_size,
            sites: 1,
            first_site: w.site,
            prevalence: Prevalence::balanced(),
            ..PhantomConfig::default()
        };
        fs::create_dir_all(self.out.join("data"))?;
        Phantom::new(config)?
            .write(&dir, true, &|_, _| {})
            .with_context(|| format!("drawing the {} world", w.name))?;
        Ok(())
    }

    /// Converts the worlds into stores: the three phantom ones with the
    /// phantom preset, the out-of-domain one from its metadata CSV.
    fn stores(&self) -> Result<()> {
        let size = self.plan.store_size.to_string();
        for w in &self.plan.worlds {
            let store = self.data(&format!("store-{}", w.name));
            if store.join("dataset.json").exists() {
                continue;
            }
            let raw = self.data(&format!("raw-{}", w.name));
            let splits = w.splits.map(|s| s.to_string()).join(",");
            let mut args: Vec<String> = vec!["convert".into()];
            if w.name == "ood" {
                let csv = self.data("ood-metadata.csv");
                metadata_csv(&raw, &csv)?;
                args.extend(strings(&[
                    "--csv",
                    &csv.display().to_string(),
                    "--image-root",
                    &raw.display().to_string(),
                    "--path-column",
                    "path",
                    "--patient-column",
                    "patient_id",
                    "--label-columns",
                    &METADATA_LABELS.join(","),
                    "--task",
                    "multilabel",
                ]));
            } else {
                args.extend(strings(&["--preset", "phantom", "--root"]));
                args.push(raw.display().to_string());
            }
            args.extend(strings(&[
                "--size",
                &size,
                "--splits",
                &splits,
                "--seed",
                &self.plan.seed.to_string(),
                "--out",
                &store.display().to_string(),
            ]));
            self.child(&args)?;
        }
        Ok(())
    }

    /// Trains the ImageNet stand-in: the demo CNN from random weights,
    /// supervised on the out-of-domain metadata labels. Returns its weights.
    fn baseline(&self) -> Result<PathBuf> {
        let dir = self.out.join("baseline-ood");
        let weights = dir.join("model.safetensors");
        if dir.join("evaluation.json").exists() && weights.exists() {
            return Ok(weights);
        }
        if dir.exists() {
            // An interrupted run: finetune refuses to overwrite it.
            fs::remove_dir_all(&dir)?;
        }
        let args = strings(&[
            "finetune",
            "--model",
            &format!("scratch:{CNN}"),
            "--data",
            &self.data("store-ood").display().to_string(),
            "--out",
            &dir.display().to_string(),
            "--epochs",
            &self.plan.baseline_epochs.to_string(),
            "--optimizer",
            "adamw",
            "--lr",
            "1e-3",
            "--batch-size",
            "32",
            "--seed",
            &self.plan.seed.to_string(),
        ]);
        self.child(&args)?;
        Ok(weights)
    }

    /// Runs this binary's subcommand `args` with its output appended to
    /// `demo.log`; a failure quotes the log's last lines.
    fn child(&self, args: &[String]) -> Result<()> {
        let exe = std::env::current_exe().context("cannot locate the cxrlearn binary")?;
        let log_path = &self.log;
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        writeln!(log, "$ cxrlearn --quiet {}", args.join(" "))?;
        let start = log.metadata()?.len();
        let status = Command::new(&exe)
            .arg("--quiet")
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log.try_clone()?)
            .status()
            .with_context(|| format!("cannot run {}", exe.display()))?;
        if !status.success() {
            let text = fs::read_to_string(log_path).unwrap_or_default();
            let tail = text.get(start as usize..).unwrap_or("").trim();
            bail!("`cxrlearn {}` failed ({status}):\n{tail}", args.join(" "));
        }
        // A blank line keeps the log readable between steps.
        writeln!(log)?;
        Ok(())
    }
}

/// Labels of the out-of-domain set: acquisition metadata, not findings.
const METADATA_LABELS: [&str; 3] = ["AP portable", "Lateral view", "Female"];

/// Writes the out-of-domain labels (`path, patient_id` and
/// [`METADATA_LABELS`]) from the world's `labels.csv` (view) and
/// `ground_truth.csv` (portable, sex).
fn metadata_csv(raw: &Path, out: &Path) -> Result<()> {
    let mut truth = std::collections::HashMap::new();
    let gt_path = raw.join("ground_truth.csv");
    let mut gt = csv::Reader::from_path(&gt_path)
        .with_context(|| format!("cannot read {}", gt_path.display()))?;
    let h = gt.headers()?.clone();
    let col = |h: &csv::StringRecord, name: &str, file: &Path| {
        h.iter()
            .position(|c| c == name)
            .with_context(|| format!("{} has no column {name}", file.display()))
    };
    let (gp, gport, gsex) = (
        col(&h, "path", &gt_path)?,
        col(&h, "portable", &gt_path)?,
        col(&h, "sex", &gt_path)?,
    );
    for r in gt.records() {
        let r = r?;
        truth.insert(r[gp].to_string(), (r[gport] == *"1", r[gsex] == *"F"));
    }
    let labels_path = raw.join("labels.csv");
    let mut labels = csv::Reader::from_path(&labels_path)
        .with_context(|| format!("cannot read {}", labels_path.display()))?;
    let h = labels.headers()?.clone();
    let (lp, lpat, lview) = (
        col(&h, "path", &labels_path)?,
        col(&h, "patient_id", &labels_path)?,
        col(&h, "view", &labels_path)?,
    );
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["path", "patient_id"].iter().chain(METADATA_LABELS.iter()))?;
    for r in labels.records() {
        let r = r?;
        let (portable, female) = *truth
            .get(&r[lp])
            .with_context(|| format!("{} is not in {}", &r[lp], gt_path.display()))?;
        let bit = |b: bool| if b { "1" } else { "0" };
        w.write_record([
            &r[lp],
            &r[lpat],
            bit(portable),
            bit(&r[lview] == "LATERAL"),
            bit(female),
        ])?;
    }
    write_atomic(
        out,
        &w.into_inner().context("cannot build the metadata CSV")?,
    )
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Prints report.md's Table 2 (the headline) to stdout.
fn print_table2(report: &str) {
    let mut inside = false;
    for line in report.lines() {
        if line.starts_with("## Table 2") {
            inside = true;
            println!("{line}");
            continue;
        }
        if inside {
            if line.starts_with("## ") || line.starts_with("![") {
                break;
            }
            println!("{line}");
        }
    }
}
