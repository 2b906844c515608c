use clap::{FromArgMatches, Parser};

use super::*;
use crate::schedule::Plateau;
use crate::ssl::text_side::Pooling;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    flags: Flags,
}

/// `extra` resolved the way the CLI does it, for 64 px images.
fn resolve_args(extra: &[&str]) -> Result<Resolved, Error> {
    let cmd = <Cli as clap::CommandFactory>::command().no_binary_name(true);
    let m = cmd.try_get_matches_from(extra).expect("clap accepts it");
    let flags = Cli::from_arg_matches(&m).unwrap().flags;
    let given = given_flags(&m);
    resolve(&flags, given.iter().map(String::as_str), 64)
}

fn schedule(extra: &[&str]) -> Result<(Shape, Option<crate::ssl::validation::Validation>), Error> {
    resolve_args(extra).map(|r| (r.config.schedule, r.config.validation))
}

#[test]
fn names_are_unique_and_looked_up() {
    let names = names();
    let set: std::collections::BTreeSet<_> = names.iter().collect();
    assert_eq!(set.len(), names.len());
    for m in METHODS {
        assert_eq!(lookup(m.name).unwrap().name, m.name);
    }
    let e = lookup("simclr").unwrap_err().to_string();
    assert!(
        e.contains("simclr") && e.contains("moco-cxr, medaug"),
        "{e}"
    );
}

#[test]
fn every_flag_a_method_reads_exists_and_belongs_to_one_group() {
    let all = long_names(<Flags as clap::Args>::augment_args(clap::Command::new("p")));
    let top = top_level_flags();
    for m in METHODS {
        for flag in m.reads.iter().flat_map(|l| l.iter()) {
            assert!(
                all.iter().any(|f| f == flag),
                "{}: --{flag} is no flag",
                m.name
            );
            assert!(
                !top.iter().any(|f| f == flag),
                "{}: --{flag} is everyone's",
                m.name
            );
        }
        for flag in m.own_flag_names() {
            let owners = METHODS
                .iter()
                .filter(|o| o.own_flag_names().contains(&flag))
                .count();
            assert_eq!(owners, 1, "--{flag}");
        }
    }
    // Every shared flag is read by some method.
    let grouped = all.iter().filter(|f| !top.contains(f));
    for flag in grouped {
        assert!(
            METHODS
                .iter()
                .any(|m| m.reads(flag) || m.own_flag_names().contains(flag)),
            "--{flag} is read by no method"
        );
    }
}

#[test]
fn every_recipe_resolves() {
    for m in METHODS {
        let mut argv = vec!["--method".to_owned(), m.name.to_owned()];
        argv.extend(m.recipe_args());
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let r = resolve_args(&argv).unwrap_or_else(|e| panic!("{}: {e}", m.name));
        assert_eq!(r.config.method, m.name);
        assert_eq!(r.config.schedule, Shape::Cosine, "{}", m.name);
    }
}

#[test]
fn flags_of_other_methods_are_refused_naming_their_owner() {
    let e = resolve_args(&["--method", "moco-cxr", "--keys", "3"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("--keys") && e.contains("are S2MTS2's"), "{e}");
    assert!(e.contains("use --method s2mts2"), "{e}");
    let e = resolve_args(&["--method", "clip", "--queue", "64"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("--queue does not apply to clip"), "{e}");
    assert!(e.contains("moco-cxr, medaug, s2mts2"), "{e}");
    let e = resolve_args(&["--method", "clip", "--text-pooling", "cls"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--text-pooling") && e.contains("convirt, refers"),
        "{e}"
    );
    assert!(resolve_args(&["--method", "refers", "--text-pooling", "cls"]).is_ok());
    let e = resolve_args(&["--method", "convirt", "--lesion-masks", "x.csv"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("--lesion-masks"), "{e}");
    // CLIP's ViT is its own: --backbone is refused, not ignored.
    let e = resolve_args(&["--method", "clip", "--backbone", "resnet50"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("--backbone does not apply to clip"), "{e}");
    // A flag at its default value but given is still refused.
    assert!(resolve_args(&["--method", "clip", "--hflip", "0.5"]).is_err());
}

#[test]
fn positives_follow_each_methods_rule() {
    let p = |extra: &[&str]| resolve_args(extra).map(|r| r.config.positive);
    assert_eq!(p(&["--method", "moco-cxr"]).unwrap(), Positive::SameImage);
    assert_eq!(p(&["--method", "medaug"]).unwrap(), Positive::SameStudy);
    assert_eq!(
        p(&["--method", "medaug", "--positive", "same-patient"]).unwrap(),
        Positive::SamePatient
    );
    assert_eq!(p(&["--method", "refers"]).unwrap(), Positive::SameStudy);
    let e = p(&["--method", "moco-cxr", "--positive", "same-study"]).unwrap_err();
    assert!(e.to_string().contains("is MedAug's"), "{e}");
    let e = p(&["--method", "s2mts2", "--positive", "same-study"]).unwrap_err();
    assert!(e.to_string().contains("views of the query image"), "{e}");
    let e = p(&["--method", "refers", "--positive", "same-patient"]).unwrap_err();
    assert!(e.to_string().contains("does not apply"), "{e}");
}

#[test]
fn the_papers_schedules_by_default() {
    let (shape, v) = schedule(&["--method", "convirt"]).unwrap();
    let v = v.unwrap();
    assert_eq!(shape, Shape::Plateau);
    assert_eq!((v.fraction, v.every, v.early_stop), (0.05, 5000, None));
    assert_eq!(
        v.plateau,
        Some(Plateau {
            factor: 0.5,
            patience: 5,
            min_lr: 1e-8
        })
    );
    let (shape, v) = schedule(&["--method", "gloria"]).unwrap();
    let v = v.unwrap();
    assert_eq!(shape, Shape::Plateau);
    assert_eq!((v.every, v.early_stop), (0, Some(10)));
    assert_eq!(
        schedule(&["--method", "moco-cxr"]).unwrap(),
        (Shape::Cosine, None)
    );
    assert_eq!(
        schedule(&["--method", "gloria", "--schedule", "cosine"]).unwrap(),
        (Shape::Cosine, None)
    );
    // Validation without the plateau: the best encoder, early stopping.
    let (shape, v) = schedule(&["--method", "clip", "--early-stop", "4"]).unwrap();
    assert_eq!(shape, Shape::Cosine);
    assert_eq!(v.unwrap().early_stop, Some(4));
}

#[test]
fn validation_flags_without_validation_are_refused() {
    for extra in [
        &["--method", "moco-cxr", "--val-every", "10"][..],
        &["--method", "moco-cxr", "--plateau-patience", "2"],
        &[
            "--method",
            "clip",
            "--val-fraction",
            "0.1",
            "--plateau-factor",
            "0.1",
        ],
        &["--method", "convirt", "--val-fraction", "0.9"],
        &["--method", "convirt", "--plateau-factor", "1.5"],
    ] {
        assert!(schedule(extra).is_err(), "{extra:?}");
    }
}

#[test]
fn method_defaults_reach_the_config() {
    let r = resolve_args(&["--method", "gloria"]).unwrap();
    assert!(matches!(r.config.rule, crate::optim::Rule::AdamW { beta1, .. } if beta1 == 0.5));
    assert_eq!(r.spec.preprocessing.normalization, gloria::HALF);
    let r = resolve_args(&["--method", "gloria", "--no-augment"]).unwrap();
    assert_eq!(r.config.augment, cxr_data::augment::Augment::none(64, 64));
    let r = resolve_args(&["--method", "refers", "--backbone", "vit-tiny"]).unwrap();
    assert_eq!(r.config.augment.hflip, 0.0, "REFERS flips in the objective");
    assert_eq!(r.config.refers.unwrap().flip, 0.5);
    let r = resolve_args(&["--method", "clip"]).unwrap();
    assert_eq!(r.backbone, "clip-visual");
    assert!(r.config.clip.is_some() && r.config.gloria.is_none());
    let e = resolve_args(&["--method", "clip", "--patch-size", "7"]).unwrap_err();
    assert!(
        e.to_string().contains("multiple of the patch size 7"),
        "{e}"
    );
}

#[test]
fn refers_text_pooling_and_dropout() {
    let vit = ["--method", "refers", "--backbone", "vit-tiny"];
    let d = resolve_args(&vit).unwrap().config.refers.unwrap();
    assert_eq!((d.pooling, d.dropout), (Pooling::Pooler, 0.1));
    let a = [&vit[..], &["--text-pooling", "mean", "--vit-dropout", "0"]].concat();
    let s = resolve_args(&a).unwrap().config.refers.unwrap();
    assert_eq!((s.pooling, s.dropout), (Pooling::Mean, 0.0));
    let a = [&vit[..], &["--vit-dropout", "1"]].concat();
    assert!(resolve_args(&a).is_err());
    let e = resolve_args(&["--method", "clip", "--vit-dropout", "0"]).unwrap_err();
    assert!(e.to_string().contains("--vit-dropout"));
    let e =
        resolve_args(&["--method", "gloria", "--lesion-masks", "/nonexistent.csv"]).unwrap_err();
    assert!(e.to_string().contains("/nonexistent.csv"));
}
