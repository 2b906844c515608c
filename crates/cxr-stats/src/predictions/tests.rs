//! Unit tests of the predictions reader and writer.

use super::*;

fn parse(text: &str) -> Result<Predictions, StatsError> {
    Predictions::from_reader(text.as_bytes(), "p.csv")
}

#[test]
fn reads_long_format() {
    let p = parse(
        "id,label,target,score,extra\n\
         a,X,1,0.8,z\n a,Y,0,0.1,z\n b,X,,0.4,z\n b,Y,nan,-3,z\n",
    )
    .unwrap();
    assert_eq!(p.ids, ["a", "b"]);
    assert_eq!(p.labels, ["X", "Y"]);
    assert_eq!(p.targets[0], [Some(true), None]);
    assert_eq!(p.targets[1], [Some(false), None]);
    assert_eq!(p.scores[1], [0.1, -3.0]);
    let mut out = Vec::new();
    p.write_to(&mut out).unwrap();
    assert_eq!(parse(std::str::from_utf8(&out).unwrap()).unwrap(), p);
}

fn error_of(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn bad_input_is_named() {
    assert!(error_of("").contains("empty"));
    assert!(error_of("id,label,target,score\n").contains("no prediction rows"));
    assert!(error_of("id,label,score\na,X,1\n").contains("missing column(s) target"));
    assert!(error_of("id,label,target,score\na,X,1,high\n").contains("line 2: score 'high'"));
    assert!(error_of("id,label,target,score\na,X,1,NaN\n").contains("not finite"));
    assert!(error_of("id,label,target,score\na,X,1,inf\n").contains("not finite"));
    assert!(error_of("id,label,target,score\na,X,2,0.1\n").contains("target '2'"));
    assert!(
        error_of("id,label,target,score\na,X,1,0.1\na,X,0,0.2\n")
            .contains("line 3: duplicate row for id 'a', label 'X'")
    );
    assert!(error_of("id,label,target,score\na,X,1\n").contains("malformed"));
}

#[test]
fn align_reorders_and_names_differences() {
    let a = parse("id,label,target,score\na,X,1,0.9\nb,X,0,0.1\n").unwrap();
    let b = parse("id,label,target,score\nb,X,0,0.3\na,X,1,0.2\n").unwrap();
    let al = a.align(&b).unwrap();
    assert_eq!(al.scores[0], [0.2, 0.3]);
    let c = parse("id,label,target,score\na,X,1,0.9\nc,X,0,0.1\n").unwrap();
    let e = a.align(&c).unwrap_err().to_string();
    assert!(e.contains("only in the model file: b"), "{e}");
    assert!(e.contains("only in the baseline file: c"), "{e}");
    let d = parse("id,label,target,score\na,X,0,0.9\nb,X,0,0.1\n").unwrap();
    assert!(a.align(&d).unwrap_err().to_string().contains("a/X"));
    let f = parse("id,label,target,score\na,Y,1,0.9\nb,Y,0,0.1\n").unwrap();
    assert!(
        a.align(&f)
            .unwrap_err()
            .to_string()
            .contains("label(s) only")
    );
}

#[test]
fn reads_and_writes_per_image_columns() {
    let p = parse(
        "id,label,target,score,patient_id,sex,age,note\n\
         a,X,1,0.8,p1,F,61,x\n a,Y,0,0.1,p1,F,61,y\n b,X,0,0.4,p2,,35,z\n b,Y,1,0.3,p2,,35,w\n",
    )
    .unwrap();
    assert_eq!(p.patients, Some(vec!["p1".to_owned(), "p2".to_owned()]));
    assert_eq!(p.attributes["sex"], [Some("F".to_owned()), None]);
    assert_eq!(
        p.attributes["age"],
        [Some("61".to_owned()), Some("35".to_owned())]
    );
    // `note` differs per row: not a per-image column unless asked for.
    assert!(!p.attributes.contains_key("note"));
    let mut out = Vec::new();
    p.write_to(&mut out).unwrap();
    let text = std::str::from_utf8(&out).unwrap();
    assert!(
        text.starts_with("id,label,target,score,patient_id,age,sex\n"),
        "{text}"
    );
    assert_eq!(parse(text).unwrap(), p);
    let e = Predictions::from_reader_with(
        "id,label,target,score,note\na,X,1,0.8,x\na,Y,0,0.1,y\n".as_bytes(),
        "p.csv",
        &["note"],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("p.csv: line 3: id 'a' has note 'y' but line 2 gave 'x'"),
        "{e}"
    );
}

#[test]
fn per_image_columns_must_agree_within_an_image() {
    assert!(
        error_of("id,label,target,score,patient_id\na,X,1,0.8,p1\na,Y,0,0.1,p2\n")
            .contains("line 3: id 'a' has patient_id 'p2' but line 2 gave 'p1'")
    );
    assert!(
        error_of("id,label,target,score,patient_id\na,X,1,0.8,\n")
            .contains("line 2: empty patient_id for id 'a'")
    );
    assert!(
        error_of("id,label,target,score,sex\na,X,1,0.8,F\na,Y,0,0.1,M\n")
            .contains("id 'a' has sex 'M' but line 2 gave 'F'")
    );
}

#[test]
fn join_takes_patients_and_attributes_from_a_store() {
    let mut p = parse("id,label,target,score\na,X,1,0.9\nb,X,0,0.1\n").unwrap();
    let mut meta = ImageMetadata {
        source: "stores/s".into(),
        ..Default::default()
    };
    meta.patients.insert("a".into(), "p1".into());
    let e = p.join(&meta).unwrap_err().to_string();
    assert!(
        e.contains("1 id(s) of the predictions are not in stores/s: b"),
        "{e}"
    );
    meta.patients.insert("b".into(), "p1".into());
    meta.attributes.insert(
        "view".into(),
        HashMap::from([("a".to_owned(), "PA".to_owned())]),
    );
    p.join(&meta).unwrap();
    assert_eq!(p.patients, Some(vec!["p1".to_owned(), "p1".to_owned()]));
    assert_eq!(p.attributes["view"], [Some("PA".to_owned()), None]);
    let mut q = parse("id,label,target,score,patient_id\na,X,1,0.9,p9\nb,X,0,0.1,p1\n").unwrap();
    let e = q.join(&meta).unwrap_err().to_string();
    assert!(
        e.contains("id 'a' has patient_id 'p9' in the predictions but 'p1' in stores/s"),
        "{e}"
    );
}

#[test]
fn align_carries_and_checks_patients() {
    let a = parse("id,label,target,score,patient_id\na,X,1,0.9,p1\nb,X,0,0.1,p2\n").unwrap();
    let b = parse("id,label,target,score\nb,X,0,0.3\na,X,1,0.2\n").unwrap();
    assert_eq!(a.align(&b).unwrap().patients, a.patients);
    let b = parse("id,label,target,score,patient_id\nb,X,0,0.3,p2\na,X,1,0.2,p1\n").unwrap();
    let no_ids = parse("id,label,target,score\na,X,1,0.9\nb,X,0,0.1\n").unwrap();
    assert_eq!(no_ids.align(&b).unwrap().patients, a.patients);
    let c = parse("id,label,target,score,patient_id\nb,X,0,0.3,p2\na,X,1,0.2,p3\n").unwrap();
    let e = a.align(&c).unwrap_err().to_string();
    assert!(
        e.contains("id 'a' has patient_id 'p1' in the model file but 'p3'"),
        "{e}"
    );
}
