//! Hostile predictions files: a file without line breaks, a header naming a
//! column twice.

use std::io::Read;

use cxr_stats::csv_bound::MAX_CSV_RECORD_BYTES;
use cxr_stats::{Predictions, StatsError};

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    read: usize,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n;
        Ok(n)
    }
}

fn parse_error(text: &str) -> StatsError {
    Predictions::from_reader(text.as_bytes(), "p.csv").unwrap_err()
}

#[test]
fn a_file_without_line_breaks_stops_at_the_record_bound() {
    // /dev/zero, cut at 64 MiB so the test ends whatever the reader does.
    let mut zeros = Counting {
        inner: std::io::repeat(0).take(64 << 20),
        read: 0,
    };
    let e = Predictions::from_reader(&mut zeros, "zeros.csv").unwrap_err();
    let StatsError::Parse { file, line, reason } = &e else {
        panic!("{e:?}")
    };
    assert_eq!((file.as_str(), *line), ("zeros.csv", Some(1)), "{e}");
    assert!(reason.contains("MAX_CSV_RECORD_BYTES"), "{e}");
    // The bound plus the parser's and the bound's buffers, not the file.
    assert!(
        zeros.read <= MAX_CSV_RECORD_BYTES + (1 << 17),
        "read {}",
        zeros.read
    );
}

#[test]
fn a_long_line_after_the_header_is_named_by_its_line() {
    let text = format!("id,label,target,score\na,x,1,0.5\n{}", "9".repeat(2 << 20));
    let e = parse_error(&text);
    assert!(
        matches!(&e, StatsError::Parse { line: Some(3), reason, .. } if reason.contains("MAX_CSV_RECORD_BYTES")),
        "{e:?}"
    );
}

#[test]
fn a_required_column_named_twice_is_refused() {
    let e = parse_error("id,label,target,score,score\na,x,1,0.9,0.1\n");
    let msg = e.to_string();
    assert!(
        msg.starts_with("p.csv: ")
            && msg.contains("column 'score' appears 2 times")
            && msg.contains("columns 4, 5"),
        "{msg}"
    );
}

#[test]
fn a_per_image_column_named_twice_is_refused() {
    // `patient_id` decides the bootstrap's unit; `sex` a subgroup.
    for column in ["patient_id", "sex"] {
        let text = format!("id,label,target,score,{column}, {column}\na,x,1,0.9,p,q\n");
        let msg = parse_error(&text).to_string();
        assert!(
            msg.contains(&format!("column '{column}' appears 2 times")),
            "{msg}"
        );
    }
    // A column asked for by name (`--subgroups scanner`) too.
    let text = "id,label,target,score,scanner,scanner\na,x,1,0.9,s1,s2\n";
    let e = Predictions::from_reader_with(text.as_bytes(), "p.csv", &["scanner"]).unwrap_err();
    assert!(
        e.to_string().contains("column 'scanner' appears 2 times"),
        "{e}"
    );
}

#[test]
fn a_repeated_column_no_one_reads_is_left_alone() {
    let text = "id,label,target,score,note,note\na,x,1,0.9,n1,n2\nb,x,0,0.1,n1,n2\n";
    let p = Predictions::from_reader(text.as_bytes(), "p.csv").unwrap();
    assert_eq!(p.ids, ["a", "b"]);
}
