//! Output directories are never shared or mixed: two commands started into
//! one `--out` at once (exactly one wins), an `--out` that holds another
//! run (refused; `--force` replaces it whole), `--resume` without a
//! checkpoint (refused).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::common::{one_process, phantom_store, run};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Starts every command of `runs` at once and waits for all.
fn at_once(runs: &[Vec<String>]) -> Vec<Output> {
    let _turn = one_process();
    let children: Vec<_> = runs
        .iter()
        .map(|args| {
            Command::new(env!("CARGO_BIN_EXE_cxrlearn"))
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

/// Of two writers, exactly one succeeded and the other failed with one
/// clear line; returns the winner's index.
fn one_winner(outs: &[Output]) -> usize {
    let won: Vec<usize> = (0..outs.len())
        .filter(|&i| outs[i].status.success())
        .collect();
    let stderr = |i: usize| String::from_utf8_lossy(&outs[i].stderr).into_owned();
    assert_eq!(won.len(), 1, "{} / {}", stderr(0), stderr(1));
    let lost = 1 - won[0];
    let err = stderr(lost);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("being written by another cxrlearn process")
            || err.contains("is not empty")
            || err.contains("exists and is not empty"),
        "{err}"
    );
    won[0]
}

#[test]
fn two_evaluations_into_one_directory_never_mix() {
    let dir = tempfile::tempdir().unwrap();
    let predictions = examples().join("predictions-ssl.csv");
    for round in 0..6 {
        let out = dir.path().join(format!("out{round}"));
        let args = |seed: &str| -> Vec<String> {
            [
                "--quiet",
                "evaluate",
                "--predictions",
                predictions.to_str().unwrap(),
                "--bootstrap",
                "200",
                "--seed",
                seed,
                "--out",
                out.to_str().unwrap(),
            ]
            .map(String::from)
            .to_vec()
        };
        let outs = at_once(&[args("1"), args("2")]);
        let winner = one_winner(&outs);
        // The directory is the winner's alone.
        assert_eq!(
            names(&out),
            ["evaluation.csv", "evaluation.json", "evaluation.md"]
        );
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("evaluation.json")).unwrap())
                .unwrap();
        let text = json.to_string();
        let seed = ["1", "2"][winner];
        assert!(
            text.contains(&format!("\"seed\":{seed}")),
            "round {round}: evaluation.json is not the winner's (seed {seed}): {text:.300}"
        );
        assert_eq!(
            names(dir.path()).len(),
            round + 1,
            "no lock or temporary left"
        );
    }
}

#[test]
fn two_phantoms_into_one_directory_never_mix() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let out = dir.path().join(format!("ph{round}"));
        let args = |seed: &str| -> Vec<String> {
            [
                "--quiet",
                "phantom",
                "--patients",
                "6",
                "--size",
                "64",
                "--seed",
                seed,
                "--out",
                out.to_str().unwrap(),
            ]
            .map(String::from)
            .to_vec()
        };
        let outs = at_once(&[args("1"), args("2")]);
        let winner = one_winner(&outs);
        let meta: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("phantom.json")).unwrap())
                .unwrap();
        let seed = [1, 2][winner];
        assert_eq!(meta["seed"], seed, "{meta}");
        assert_eq!(names(dir.path()).len(), round + 1, "no partial left");
    }
}

#[test]
fn another_run_is_refused_and_force_replaces_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("finetune-run");
    std::fs::create_dir(&run_dir).unwrap();
    let files = [
        ("config.toml", "command = \"finetune\"\n"),
        ("model.safetensors", "weights"),
        ("log.jsonl", "{}\n"),
        ("evaluation.json", "{\"old\": true}\n"),
    ];
    for (name, text) in files {
        std::fs::write(run_dir.join(name), text).unwrap();
    }
    let predictions = examples().join("predictions-ssl.csv");
    let out = run_dir.to_str().unwrap();
    let p = predictions.to_str().unwrap();
    for args in [
        vec!["evaluate", "--predictions", p, "--out", out],
        vec!["probe", "--features", p, "--out", out],
    ] {
        let o = run(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains("already holds a run (config.toml,"),
            "{args:?}: {err}"
        );
        assert!(err.contains("--force"), "{err}");
        for (name, text) in files {
            assert_eq!(std::fs::read_to_string(run_dir.join(name)).unwrap(), text);
        }
    }

    // --force: the directory holds the new evaluation and nothing of the
    // finetune run (no model.safetensors that `predict` would pick up).
    let o = run(&[
        "--quiet",
        "evaluate",
        "--predictions",
        p,
        "--out",
        out,
        "--force",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        names(&run_dir),
        ["evaluation.csv", "evaluation.json", "evaluation.md"]
    );
    assert_eq!(names(dir.path()), ["finetune-run"]);

    // A failing --force run puts the previous output back.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "id,label,target,score\na,X,1,oops\n").unwrap();
    let before = std::fs::read(run_dir.join("evaluation.json")).unwrap();
    let o = run(&[
        "--quiet",
        "evaluate",
        "--predictions",
        bad.to_str().unwrap(),
        "--out",
        out,
        "--force",
    ]);
    assert!(!o.status.success());
    assert_eq!(
        std::fs::read(run_dir.join("evaluation.json")).unwrap(),
        before
    );

    // --force never empties a directory cxrlearn did not write.
    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("thesis.tex"), "years").unwrap();
    let o = run(&[
        "evaluate",
        "--predictions",
        p,
        "--out",
        mine.to_str().unwrap(),
        "--force",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("holds files cxrlearn did not write"), "{err}");
    assert_eq!(names(&mine), ["thesis.tex"]);
}

#[test]
fn predict_refuses_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.csv");
    std::fs::write(&out, "mine").unwrap();
    let o = run(&[
        "predict",
        "--model",
        dir.path().join("none.safetensors").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "x.png",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("p.csv exists; replace it with --force"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "mine");
}

#[test]
fn resume_without_a_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = phantom_store(dir.path(), 12, 64, 1, 0);
    let out = dir.path().join("run");
    let args = [
        "--quiet",
        "finetune",
        "--model",
        "scratch:resnet18-w16",
        "--data",
        store.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "50",
        "--batch-size",
        "8",
        "--device",
        "cpu",
    ];
    // Stopped before its first checkpoint: a run with its settings and no
    // last.safetensors.
    {
        let _turn = one_process();
        let mut child = Command::new(env!("CARGO_BIN_EXE_cxrlearn"))
            .args(args)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while !out.join("config.toml").exists() {
            assert!(started.elapsed().as_secs() < 60, "no config.toml written");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert!(!out.join("last.safetensors").exists());
    let mut resume = args.to_vec();
    resume.push("--resume");
    let o = run(&resume);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("last.safetensors not found (the run stopped before its first checkpoint)"),
        "{err}"
    );
    // Without --resume it is another run's directory; --force starts over.
    let o = run(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("already holds a run"), "{err}");
    assert!(err.contains("continue it with --resume"), "{err}");
    let o = run(&[&args[..], &["--force", "--resume"]].concat());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot be used with"), "{err}");
}
