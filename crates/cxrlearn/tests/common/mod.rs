//! Running the `cxrlearn` binary from the end-to-end tests.

// Each test binary compiles this module and uses a subset of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A turn at libtorch: held while a `cxrlearn` process runs or a test trains
/// in this process. The tests share one binary and run on parallel
/// threads; two libtorch processes at once on a small machine slow each
/// other about tenfold (each spins its own intra-op threads), and training
/// in this process reseeds libtorch's one generator, so heavy work takes
/// turns while lighter tests go on. Reentrant on one thread (a test that
/// holds its turn may still run the binary).
pub fn one_process() -> Turn {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    thread_local!(static DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) });
    let depth = DEPTH.with(|d| {
        d.set(d.get() + 1);
        d.get()
    });
    let guard = (depth == 1).then(|| {
        TURN.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    });
    Turn {
        _guard: guard,
        depth: &DEPTH,
    }
}

/// See [`one_process`].
pub struct Turn {
    _guard: Option<std::sync::MutexGuard<'static, ()>>,
    depth: &'static std::thread::LocalKey<std::cell::Cell<usize>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.depth.with(|d| d.set(d.get() - 1));
    }
}

/// Runs `cxrlearn` with `args` and returns its output, whatever the exit status.
pub fn run(args: &[&str]) -> Output {
    let _turn = one_process();
    Command::new(env!("CARGO_BIN_EXE_cxrlearn"))
        .args(args)
        .output()
        .expect("run cxrlearn")
}

/// Runs `cxrlearn` with `args` and fails the test unless it succeeds.
pub fn run_ok(args: &[&str]) -> Output {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// `base` with `extra` applied: a flag already in `base` gets `extra`'s
/// value (clap refuses repeated flags), others are appended. Flags in `bare`
/// take no value.
pub fn with_flags<'a>(mut base: Vec<&'a str>, extra: &[&'a str], bare: &[&str]) -> Vec<&'a str> {
    let mut rest = extra.iter();
    while let Some(&flag) = rest.next() {
        let takes_value = !bare.contains(&flag);
        match base.iter().position(|x| *x == flag) {
            Some(i) if takes_value => base[i + 1] = rest.next().copied().unwrap(),
            _ => {
                base.push(flag);
                if takes_value {
                    base.push(rest.next().copied().unwrap());
                }
            }
        }
    }
    base
}

/// A 40-image, 64 px store of plain patterns with a patient column and no
/// report column, under `dir/NAME`: the bad input of image-text methods.
pub fn store_without_reports(dir: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("img")).unwrap();
    let mut csv = String::from("file,pid,a\n");
    for i in 0..40u32 {
        let file = format!("img/{i}.png");
        let pixels: Vec<u8> = (0..64 * 64)
            .map(|p| ((p * 7 + i * 13) % 256) as u8)
            .collect();
        image::save_buffer(
            dir.join(&file),
            &pixels,
            64,
            64,
            image::ExtendedColorType::L8,
        )
        .unwrap();
        csv += &format!("{file},p{i},{}\n", i % 2);
    }
    std::fs::write(dir.join("labels.csv"), csv).unwrap();
    let store = dir.join(name);
    run_ok(&[
        "convert",
        "--quiet",
        "--csv",
        dir.join("labels.csv").to_str().unwrap(),
        "--image-root",
        dir.to_str().unwrap(),
        "--path-column",
        "file",
        "--label-columns",
        "a",
        "--task",
        "multilabel",
        "--patient-column",
        "pid",
        "--size",
        "64",
        "--out",
        store.to_str().unwrap(),
    ]);
    store
}

/// A phantom (balanced prevalence, `render` px, `sites` sites, `seed`)
/// converted with the phantom preset to a 64 px store under `dir/store`.
pub fn phantom_store(dir: &Path, patients: usize, render: u32, sites: u32, seed: u64) -> PathBuf {
    let raw = dir.join("raw");
    let store = dir.join("store");
    let (p, r, s, seed) = (
        patients.to_string(),
        render.to_string(),
        sites.to_string(),
        seed.to_string(),
    );
    run_ok(&[
        "--quiet",
        "phantom",
        "--out",
        raw.to_str().unwrap(),
        "--patients",
        &p,
        "--prevalence",
        "balanced",
        "--size",
        &r,
        "--sites",
        &s,
        "--seed",
        &seed,
    ]);
    run_ok(&[
        "--quiet",
        "convert",
        "--preset",
        "phantom",
        "--root",
        raw.to_str().unwrap(),
        "--size",
        "64",
        "--out",
        store.to_str().unwrap(),
    ]);
    store
}

/// The records of a run's `log.jsonl` (none before the file exists).
pub fn log(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("log.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The records of one `event` kind.
pub fn events<'a>(log: &'a [Value], kind: &str) -> Vec<&'a Value> {
    log.iter().filter(|v| v["event"] == kind).collect()
}

/// Mean of a numeric field over records.
pub fn mean(v: &[&Value], key: &str) -> f64 {
    v.iter().map(|s| s[key].as_f64().unwrap()).sum::<f64>() / v.len() as f64
}

/// Starts `cxrlearn args` writing into `run` and SIGKILLs it once its log
/// shows a step checkpoint in epoch `epoch` or later; fails the test if the
/// run ends first (the kill would then test nothing).
pub fn kill_after_checkpoint(args: &[&str], run: &Path, epoch: u64) {
    let _turn = one_process();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cxrlearn"))
        .args(args)
        .spawn()
        .expect("spawn cxrlearn");
    let started = Instant::now();
    loop {
        let l = log(run);
        if events(&l, "checkpoint")
            .iter()
            .any(|c| c["epoch"].as_u64() >= Some(epoch))
        {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run finished before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the run made no checkpoint"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        events(&log(run), "done").is_empty(),
        "the kill came too late"
    );
}

/// Extracts `model`'s features of every `store` image into `out` on the
/// CPU and returns the `meta.json` written there.
pub fn features(model: &Path, store: &Path, out: &Path) -> Value {
    features_of(model.to_str().unwrap(), store, out)
}

/// As [`features`], for a model spec such as `scratch:vit-tiny`.
pub fn features_of(model: &str, store: &Path, out: &Path) -> Value {
    run_ok(&[
        "--quiet",
        "features",
        "--model",
        model,
        "--data",
        store.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    serde_json::from_slice(&std::fs::read(out.join("meta.json")).unwrap()).unwrap()
}

/// The memory a hostile input may cost: every allocation of the process
/// counts against it.
pub const HOSTILE_MEMORY: u64 = 1 << 30;

/// The time a hostile input may cost.
pub const HOSTILE_TIME: Duration = Duration::from_secs(5);

/// Runs `cxrlearn` with `args` under a limit of `bytes` on its data segment
/// (util-linux's `prlimit`) and returns its output and wall time; a run past
/// 60 s is killed and fails the test.
///
/// The limit is `RLIMIT_DATA`, which since Linux 4.7 counts the heap and
/// every private writable mapping, that is every allocation, so an input
/// that makes the program allocate beyond it ends in an allocation failure
/// (exit 134) instead of a clean error. `RLIMIT_AS` cannot be used: the
/// libtorch of the PyTorch wheel maps its CUDA libraries at load, over 2 GiB
/// of address space before `main` runs.
pub fn run_limited(args: &[&str], bytes: u64) -> (Output, Duration) {
    use std::io::Read;
    use std::process::Stdio;
    let _turn = one_process();
    let start = Instant::now();
    let mut child = Command::new("prlimit")
        .arg(format!("--data={bytes}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_cxrlearn"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run prlimit (util-linux) with cxrlearn");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for cxrlearn") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("{args:?} ran past 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = start.elapsed();
    let out = Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    (out, took)
}

/// Runs `cxrlearn` with `args` as a hostile input must end: within
/// [`HOSTILE_MEMORY`] and [`HOSTILE_TIME`], exit status 1, and one `error:`
/// line containing `message`. Returns stderr.
pub fn refused_within_limits(args: &[&str], message: &str) -> String {
    let (out, took) = run_limited(args, HOSTILE_MEMORY);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    assert!(stderr.contains(message), "{args:?}: {stderr}");
    assert!(
        took < HOSTILE_TIME,
        "{args:?} took {took:?} (at most {HOSTILE_TIME:?}): {stderr}"
    );
    stderr
}
