//! `cxrlearn evaluate` against the scikit-learn bootstrap loop it replaces.
//!
//! Run with `scripts/bench.sh evaluate` (sets up the Python peer), or
//! `CXRLEARN_BENCH_PYTHON=/path/to/python cargo bench -p cxrlearn --bench evaluate`.
//! NIH-sized data: 22,424 test images x 14 labels, paired against a baseline,
//! 1000 replicates. Both sides read the same CSV files; the peer is the loop of
//! the original's confidence-interval scripts (`roc_auc_score` per replicate per
//! label, for both models).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const N_IMAGES: usize = 22_424;
const PREVALENCE: [f64; 14] = [
    0.103, 0.025, 0.042, 0.018, 0.119, 0.051, 0.013, 0.002, 0.177, 0.047, 0.056, 0.030, 0.015,
    0.053,
];
const REPLICATES: usize = 1000;

fn write_predictions(path: &Path, seed: u64, separation: f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut targets_rng = ChaCha8Rng::seed_from_u64(1234);
    let mut s = String::from("id,label,target,score\n");
    for i in 0..N_IMAGES {
        for (j, &p) in PREVALENCE.iter().enumerate() {
            let y = targets_rng.random_bool(p);
            let noise: f64 = rng.random::<f64>() + rng.random::<f64>() + rng.random::<f64>();
            let score = noise + if y { separation } else { 0.0 };
            // Four decimals, as predictions files usually carry: many ties.
            let _ = writeln!(s, "img_{i:05},label_{j:02},{},{score:.4}", u8::from(y));
        }
    }
    std::fs::write(path, s).expect("write predictions");
}

fn main() {
    let dir = std::env::temp_dir().join(format!("cxrlearn-bench-evaluate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let model = dir.join("model.csv");
    let baseline = dir.join("baseline.csv");
    write_predictions(&model, 1, 0.6);
    write_predictions(&baseline, 2, 0.45);
    let exe = env!("CARGO_BIN_EXE_cxrlearn");

    let mut rust_times = Vec::new();
    for run in 0..3 {
        let out = dir.join(format!("out-{run}"));
        let start = Instant::now();
        let status = Command::new(exe)
            .args([
                "--quiet",
                "evaluate",
                "--bootstrap",
                &REPLICATES.to_string(),
            ])
            .arg("--predictions")
            .arg(&model)
            .arg("--baseline")
            .arg(&baseline)
            .arg("--out")
            .arg(&out)
            .status()
            .expect("run cxrlearn");
        assert!(status.success(), "cxrlearn evaluate failed");
        rust_times.push(start.elapsed().as_secs_f64());
    }
    rust_times.sort_by(f64::total_cmp);
    let rust = rust_times[1];
    println!(
        "cxrlearn evaluate ({N_IMAGES} images x {} labels, paired, {REPLICATES} replicates, {} threads): median of 3 = {rust:.3} s",
        PREVALENCE.len(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let python = std::env::var("CXRLEARN_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/evaluate_sklearn.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(&model)
        .arg(&baseline)
        .arg(REPLICATES.to_string())
        .output()
        .expect("run python");
    if !output.status.success() {
        eprintln!(
            "scikit-learn peer failed (set CXRLEARN_BENCH_PYTHON to a python with numpy, pandas and scikit-learn, or run scripts/bench.sh evaluate):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::process::exit(1);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    let sklearn: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("seconds="))
        .and_then(|v| v.trim().parse().ok())
        .expect("peer printed no seconds=");
    println!(
        "scikit-learn loop: {sklearn:.1} s; cxrlearn evaluate: {rust:.3} s; ratio: {:.0}x faster",
        sklearn / rust
    );
    let _ = std::fs::remove_dir_all(&dir);
}
