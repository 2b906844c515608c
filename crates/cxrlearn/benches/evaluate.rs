//! `cxrlearn evaluate` against the scikit-learn bootstrap loop it replaces.
//!
//! Run with `scripts/bench.sh evaluate` (sets up the Python peer), or
//! `CXRLEARN_BENCH_PYTHON=/path/to/python cargo bench -p cxrlearn --bench evaluate`.
//! NIH-sized data: 22,424 test images of about 6,000 patients x 14 labels,
//! paired against a baseline, 1000 replicates. cxrlearn runs twice: resampling
//! images (the paper's bootstrap) and resampling patients (its default when
//! patient ids are known); the budget is patient-level within 2x of
//! image-level. Both sides read the same CSV files; the peer is the loop of
//! the original's confidence-interval scripts (`roc_auc_score` per replicate
//! per label, for both models, resampling images).

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

/// NIH's test split: 22,424 films of about 6,000 patients (3.7 per patient);
/// a new patient starts with probability 1 / 3.7 at every image.
fn patients() -> Vec<u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    let mut patient = 0u32;
    (0..N_IMAGES)
        .map(|i| {
            if i > 0 && rng.random_bool(1.0 / 3.7) {
                patient += 1;
            }
            patient
        })
        .collect()
}

fn write_predictions(path: &Path, seed: u64, separation: f64, patients: &[u32]) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut targets_rng = ChaCha8Rng::seed_from_u64(1234);
    let mut s = String::from("id,label,target,score,patient_id\n");
    for (i, patient) in patients.iter().enumerate() {
        for (j, &p) in PREVALENCE.iter().enumerate() {
            let y = targets_rng.random_bool(p);
            let noise: f64 = rng.random::<f64>() + rng.random::<f64>() + rng.random::<f64>();
            let score = noise + if y { separation } else { 0.0 };
            // Four decimals, as predictions files usually carry: many ties.
            let _ = writeln!(
                s,
                "img_{i:05},label_{j:02},{},{score:.4},p{patient}",
                u8::from(y),
            );
        }
    }
    std::fs::write(path, s).expect("write predictions");
}

/// Median of three runs of `cxrlearn evaluate` with `extra` flags.
fn time_evaluate(exe: &str, dir: &Path, model: &Path, baseline: &Path, extra: &[&str]) -> f64 {
    let mut times = Vec::new();
    for run in 0..3 {
        let out = dir.join(format!("out-{}-{run}", extra.join("-")));
        let start = Instant::now();
        let status = Command::new(exe)
            .args([
                "--quiet",
                "evaluate",
                "--bootstrap",
                &REPLICATES.to_string(),
            ])
            .args(extra)
            .arg("--predictions")
            .arg(model)
            .arg("--baseline")
            .arg(baseline)
            .arg("--out")
            .arg(&out)
            .status()
            .expect("run cxrlearn");
        assert!(status.success(), "cxrlearn evaluate failed");
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    times[1]
}

fn main() {
    let dir = std::env::temp_dir().join(format!("cxrlearn-bench-evaluate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let model = dir.join("model.csv");
    let baseline = dir.join("baseline.csv");
    let patients = patients();
    write_predictions(&model, 1, 0.6, &patients);
    write_predictions(&baseline, 2, 0.45, &patients);
    let exe = env!("CARGO_BIN_EXE_cxrlearn");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let n_patients = patients.last().map_or(0, |p| p + 1);

    let rust = time_evaluate(exe, &dir, &model, &baseline, &["--resample", "image"]);
    println!(
        "cxrlearn evaluate, images resampled ({N_IMAGES} images x {} labels, paired, {REPLICATES} replicates, {threads} threads): median of 3 = {rust:.3} s",
        PREVALENCE.len(),
    );
    let by_patient = time_evaluate(exe, &dir, &model, &baseline, &["--resample", "patient"]);
    println!(
        "cxrlearn evaluate, patients resampled ({n_patients} patients, {:.2} images each): median of 3 = {by_patient:.3} s; patient / image = {:.2}x",
        N_IMAGES as f64 / f64::from(n_patients),
        by_patient / rust
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
        "scikit-learn loop (images): {sklearn:.1} s; cxrlearn evaluate: {rust:.3} s (images), {by_patient:.3} s (patients); ratio: {:.0}x faster (images), {:.0}x (patients, against the image-level loop)",
        sklearn / rust,
        sklearn / by_patient
    );
    let _ = std::fs::remove_dir_all(&dir);
}
