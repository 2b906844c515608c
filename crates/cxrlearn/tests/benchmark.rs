//! `cxrlearn benchmark` end to end on two small phantom stores: a grid of a
//! random-init baseline and a tiny MoCo-CXR pretraining recipe, probed and
//! finetuned (docs/benchmark.md). The report holds every cell; a rerun skips
//! all cells; a changed probe setting reruns exactly the linear cells; a
//! broken model fails its cells without stopping the others; `--task-index`
//! runs one cell; `--emit-slurm` writes the array script; bad grids fail
//! naming the bad key.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::{phantom_store, run, run_ok as cxrlearn};
use serde_json::Value;

/// Two stores, `a` and `b`, from different phantom seeds.
fn stores(dir: &Path) -> (PathBuf, PathBuf) {
    let a = phantom_store(&dir.join("a"), 80, 64, 1, 0);
    let b = phantom_store(&dir.join("b"), 80, 64, 1, 1);
    (a, b)
}

/// A grid of `models` (TOML `[[model]]` tables) on stores `a` and `b`, with
/// `probe` as the `[probe]` table body.
fn grid(a: &Path, b: &Path, models: &str, probe: &str) -> String {
    format!(
        r#"baseline = "random"
strategies = ["linear", "finetune"]
seeds = [0]

[[dataset]]
name = "a"
store = "{}"

[[dataset]]
name = "b"
store = "{}"

{models}

[probe]
{probe}

[finetune]
epochs = 1
batch_size = 16

[report]
n_bootstrap = 100

[slurm]
cpus_per_task = 2
mem = "2G"
time = "00:10:00"
"#,
        a.display(),
        b.display()
    )
}

const MODELS: &str = r#"[[model]]
name = "random"
model = "scratch:resnet18-w16"

[[model]]
name = "moco"
pretrain = { method = "moco-cxr", data = "a", backbone = "resnet18-w16", epochs = 1, batch_size = 16, queue = 64 }
"#;

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn cell_json(out: &Path, dataset: &str, model: &str, strategy: &str) -> PathBuf {
    out.join("cells")
        .join(dataset)
        .join(model)
        .join(strategy)
        .join("seed-0")
        .join("cell.json")
}

fn benchmark(config: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "benchmark",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    run(&args)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// (dataset, model, strategy) of every cell of the report with `status`.
fn report_cells(report: &Value, status: &str) -> Vec<(String, String, String)> {
    report["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == status)
        .map(|c| {
            (
                c["dataset"].as_str().unwrap().to_owned(),
                c["model"].as_str().unwrap().to_owned(),
                c["strategy"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn grid_runs_skips_reruns_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = stores(dir.path());
    let config = dir.path().join("grid.toml");
    let out = dir.path().join("bench");
    std::fs::write(&config, grid(&a, &b, MODELS, "")).unwrap();

    let o = benchmark(&config, &out, &["--jobs", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("8 cells: 8 ran, 0 up to date, 0 failed"),
        "{}",
        stderr(&o)
    );

    // The recipe ran once, into DIR/pretrain/moco, and its encoder was used.
    let pretrain = out.join("pretrain").join("moco");
    assert_eq!(json(&pretrain.join("benchmark.json"))["status"], "ok");
    let cmds = json(&cell_json(&out, "b", "moco", "finetune"))["commands"].clone();
    let encoder = pretrain.join("encoder.safetensors");
    assert!(
        cmds[0]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == encoder.to_str().unwrap())
    );

    // The report: every cell ok, both datasets, both strategies, and the
    // Table 2 comparison against the finetuned baseline.
    let report = json(&out.join("report.json"));
    let ok = report_cells(&report, "ok");
    assert_eq!(ok.len(), 8, "{report:#}");
    for d in ["a", "b"] {
        for m in ["random", "moco"] {
            for s in ["linear", "finetune"] {
                assert!(ok.contains(&(d.into(), m.into(), s.into())), "{d}/{m}/{s}");
            }
        }
    }
    assert_eq!(report["settings"]["baseline_strategy"]["fixed"], "finetune");
    assert_eq!(report["settings"]["n_bootstrap"], 100);
    let datasets = report["datasets"].as_array().unwrap();
    assert_eq!(datasets.len(), 2);
    for d in datasets {
        for s in d["strategies"].as_array().unwrap() {
            assert_eq!(s["baseline"]["model"], "random");
            assert_eq!(s["best_ssl"]["model"], "moco");
            let auc = s["best_ssl"]["macro"]["auc"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&auc));
        }
    }
    assert!(out.join("report.md").is_file());
    assert!(out.join("figures").read_dir().unwrap().count() > 0);

    // A rerun finds every cell up to date and rewrites no cell record.
    let before: Vec<String> = ["linear", "finetune"]
        .iter()
        .map(|s| std::fs::read_to_string(cell_json(&out, "a", "random", s)).unwrap())
        .collect();
    let t = Instant::now();
    let o = benchmark(&config, &out, &["--jobs", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("8 cells: 0 ran, 8 up to date, 0 failed"),
        "{}",
        stderr(&o)
    );
    assert!(
        t.elapsed().as_secs_f64() < 30.0,
        "rerun took {:?}",
        t.elapsed()
    );
    let after: Vec<String> = ["linear", "finetune"]
        .iter()
        .map(|s| std::fs::read_to_string(cell_json(&out, "a", "random", s)).unwrap())
        .collect();
    assert_eq!(before, after);

    // A probe setting changes the linear cells' hash only.
    std::fs::write(&config, grid(&a, &b, MODELS, "max_iter = 200")).unwrap();
    let o = benchmark(&config, &out, &["--jobs", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("8 cells: 4 ran, 4 up to date, 0 failed"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_to_string(cell_json(&out, "a", "random", "finetune")).unwrap(),
        before[1]
    );
    assert_ne!(
        std::fs::read_to_string(cell_json(&out, "a", "random", "linear")).unwrap(),
        before[0]
    );
    let probe_config =
        std::fs::read_to_string(out.join("cells/a/random/linear/seed-0/config.toml")).unwrap();
    assert!(probe_config.contains("max_iter = 200"), "{probe_config}");

    // `benchmark report` rebuilds the same cell list from the directory alone.
    let o = cxrlearn(&["benchmark", "report", "--out", out.to_str().unwrap()]);
    assert!(
        stderr(&o).contains("8 cells: 8 ok, 0 missing, 0 failed"),
        "{}",
        stderr(&o)
    );
    assert_eq!(report_cells(&json(&out.join("report.json")), "ok").len(), 8);
}

#[test]
fn failed_cells_do_not_stop_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let a = phantom_store(&dir.path().join("a"), 80, 64, 1, 0);
    let config = dir.path().join("grid.toml");
    let out = dir.path().join("bench");
    let models = r#"[[model]]
name = "random"
model = "scratch:resnet18-w16"

[[model]]
name = "broken"
model = "no-such-encoder.safetensors"
"#;
    let text = grid(&a, &a, models, "").replace(
        "[[dataset]]\nname = \"b\"",
        "[[dataset]]\nname = \"a-again\"",
    );
    std::fs::write(&config, text).unwrap();
    let o = benchmark(&config, &out, &["--jobs", "2"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("4 of 8 cells failed"), "{err}");
    assert!(err.lines().last().unwrap().starts_with("error: "), "{err}");
    for d in ["a", "a-again"] {
        for s in ["linear", "finetune"] {
            let broken = json(&cell_json(&out, d, "broken", s));
            assert_eq!(broken["status"], "failed");
            let e = broken["error"].as_str().unwrap();
            assert!(e.contains("no-such-encoder"), "{e}");
            assert_eq!(json(&cell_json(&out, d, "random", s))["status"], "ok");
        }
    }
    let report = json(&out.join("report.json"));
    assert_eq!(report_cells(&report, "ok").len(), 4);
    assert_eq!(report_cells(&report, "failed").len(), 4);
    assert!(
        report_cells(&report, "failed")
            .iter()
            .all(|c| c.1 == "broken")
    );
}

#[test]
fn task_index_runs_one_cell_and_report_lists_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = stores(dir.path());
    let config = dir.path().join("grid.toml");
    let out = dir.path().join("bench");
    std::fs::write(&config, grid(&a, &b, MODELS, "")).unwrap();
    // Order: dataset, model, strategy, seed -> cell 5 is b / random / finetune.
    let o = benchmark(&config, &out, &["--task-index", "5"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut records = Vec::new();
    for d in ["a", "b"] {
        for m in ["random", "moco"] {
            for s in ["linear", "finetune"] {
                if cell_json(&out, d, m, s).exists() {
                    records.push(format!("{d}/{m}/{s}"));
                }
            }
        }
    }
    assert_eq!(records, ["b/random/finetune"]);
    assert!(
        !out.join("pretrain").exists(),
        "cell 5 needs no pretraining"
    );
    assert!(
        !out.join("report.json").exists(),
        "--task-index builds no report"
    );

    let o = benchmark(&config, &out, &["--task-index", "8"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("the grid has 8 cells"),
        "{}",
        stderr(&o)
    );

    let o = cxrlearn(&["benchmark", "report", "--out", out.to_str().unwrap()]);
    assert!(stderr(&o).contains("1 ok, 7 missing"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("missing: a / linear / moco / seed 0"),
        "{}",
        stderr(&o)
    );
    let report = json(&out.join("report.json"));
    assert_eq!(
        report_cells(&report, "ok"),
        [("b".into(), "random".into(), "finetune".into())]
    );
    assert_eq!(report_cells(&report, "missing").len(), 7);
}

#[test]
fn emit_slurm_writes_the_array_script() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("grid.toml");
    let out = dir.path().join("bench");
    let script = dir.path().join("grid.sbatch");
    // Stores need not exist to emit: nothing runs.
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::write(&config, grid(&a, &b, MODELS, "")).unwrap();
    let o = benchmark(&config, &out, &["--emit-slurm", script.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&script).unwrap();
    for line in [
        "#!/bin/bash".to_owned(),
        "#SBATCH --array=0-7".to_owned(),
        format!("#SBATCH --output={}/slurm/%A_%a.out", out.display()),
        "#SBATCH --cpus-per-task=2".to_owned(),
        "#SBATCH --mem=2G".to_owned(),
        "#SBATCH --time=00:10:00".to_owned(),
        format!(
            "exec '{}' benchmark --config '{}' --out '{}' --task-index \"$SLURM_ARRAY_TASK_ID\"",
            env!("CARGO_BIN_EXE_cxrlearn"),
            config.display(),
            out.display()
        ),
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    assert!(text.contains("export LD_LIBRARY_PATH="), "{text}");
    assert!(out.join("slurm").is_dir());
    assert!(out.join("config.toml").is_file());
    assert!(!out.join("cells").exists());
    // --task-index and --emit-slurm exclude each other.
    let o = benchmark(&config, &out, &["--emit-slurm", "x", "--task-index", "0"]);
    assert!(!o.status.success());
}

#[test]
fn bad_grids_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("grid.toml");
    let out = dir.path().join("bench");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let cases = [
        (grid(&a, &b, MODELS, "c_gird = [0.1, 1.0]"), "--c-gird"),
        (grid(&a, &b, MODELS, "seed = 3"), "seed"),
        (grid(&a, &b, MODELS, "") + "colour = \"red\"\n", "colour"),
        (
            grid(&a, &b, MODELS, "").replace("baseline = \"random\"", "baseline = \"imagenet\""),
            "imagenet",
        ),
        (
            grid(&a, &b, MODELS, "").replace("\"finetune\"]", "\"finetune\", \"zeroshot\"]"),
            "zeroshot",
        ),
        (
            grid(&a, &b, &MODELS.replace("epochs = 1,", "epoch = 1,"), ""),
            "--epoch",
        ),
        (
            grid(
                &a,
                &b,
                &MODELS.replace("name = \"moco\"", "name = \"random\""),
                "",
            ),
            "two [[model]] entries",
        ),
        (
            grid(&a, &b, MODELS, "").replace("mem = \"2G\"", "memory = \"2G\""),
            "memory",
        ),
        (
            grid(&a, &b, MODELS, "").replace("seeds = [0]", "seeds = [0]\nfractions = [1.5]"),
            "fractions: 1.5 is not in (0, 1]",
        ),
        (
            grid(&a, &b, MODELS, "").replace(
                "seeds = [0]",
                "seeds = [0]\nfractions = [0.1]\nfraction_strategies = [\"zeroshot\"]",
            ),
            "fraction_strategies: 'zeroshot'",
        ),
    ];
    for (text, needle) in cases {
        std::fs::write(&config, &text).unwrap();
        let o = benchmark(&config, &out, &[]);
        assert!(!o.status.success(), "accepted:\n{text}");
        let err = stderr(&o);
        assert!(err.contains(needle), "{needle:?} not in {err}");
        assert!(
            err.starts_with("error: ") || err.contains("\nerror: "),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(!out.exists(), "a rejected grid creates nothing");
}

/// Label efficiency: `fractions` runs the linear cells again on nested,
/// patient-level training subsets written into the store; the whole-split
/// cells keep their directories and hashes; the report gets the curve.
#[test]
fn fractions_run_label_efficiency_cells_on_listed_subsets() {
    let dir = tempfile::tempdir().unwrap();
    let a = phantom_store(&dir.path().join("a"), 80, 64, 1, 0);
    let config = dir.path().join("grid.toml");
    let out = dir.path().join("bench");
    std::fs::write(
        &config,
        format!(
            r#"baseline = "random"
strategies = ["linear", "finetune"]
seeds = [0]
fractions = [0.5]
fraction_strategies = ["linear"]

[[dataset]]
name = "a"
store = "{}"

[[model]]
name = "random"
model = "scratch:resnet18-w16"

[finetune]
epochs = 1
batch_size = 16

[report]
n_bootstrap = 50
"#,
            a.display()
        ),
    )
    .unwrap();
    let o = benchmark(&config, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("3 cells: 3 ran"), "{}", stderr(&o));
    let linear = out.join("cells/a/random/linear");
    let half = linear.join("seed-0-fraction-0.5");
    assert!(linear.join("seed-0/predictions-test.csv").is_file());
    assert!(half.join("predictions-test.csv").is_file());
    assert!(
        !out.join("cells/a/random/finetune/seed-0-fraction-0.5")
            .exists()
    );
    // The subset the cell trained on is a published list in the store.
    let list = a.join("subsets/seed-0/fraction-0.5.csv");
    let listed = std::fs::read_to_string(&list).unwrap().lines().count() - 1;
    let config_toml = std::fs::read_to_string(half.join("config.toml")).unwrap();
    assert!(config_toml.contains("fraction = 0.5"), "{config_toml}");
    let store = json(&a.join("dataset.json"));
    let train = store["splits"]["train"].as_u64().unwrap() as usize;
    assert!(listed < train && listed > train / 4, "{listed} of {train}");
    // Same test images either way; the test predictions carry patients.
    let head = |p: &Path| {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_owned()
    };
    assert!(head(&half.join("predictions-test.csv")).contains("patient_id"));
    let e = json(&half.join("evaluation.json"));
    assert_eq!(e["resample"], "patient");
    let report = json(&out.join("report.json"));
    let cells = report["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 3);
    assert!(
        cells
            .iter()
            .any(|c| c["fraction"] == 0.5 && c["status"] == "ok")
    );
    // A rerun is up to date.
    let o = benchmark(&config, &out, &[]);
    assert!(
        stderr(&o).contains("3 cells: 0 ran, 3 up to date"),
        "{}",
        stderr(&o)
    );
}
