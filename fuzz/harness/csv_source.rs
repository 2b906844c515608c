//! The `csv_source` fuzz harness, shared by the fuzz target and cxr-data's
//! regression test (`tests/fuzz_regressions.rs`) so both run the same code.
//!
//! The first byte chooses how the file is read: bits 0-1 the task (binary,
//! multilabel, multiclass), bit 2 a patient column, bit 3 a split column, bits
//! 5-6 the delimiter of [`Csv::read_with`], bit 7 a `.csv.gz` name (the gzip
//! reader). The rest is the file, written where the readers expect a path.

use cxr_data::csv_source::{Csv, CsvSpec, read_generic};
use cxr_data::labels::Task;

/// Reads `bytes` as described above; errors are expected, panics are findings.
pub fn run(bytes: &[u8]) {
    let Some((&flags, body)) = bytes.split_first() else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let name = if flags & 0x80 != 0 {
        "labels.csv.gz"
    } else {
        "labels.csv"
    };
    let path = dir.path().join(name);
    std::fs::write(&path, body).expect("writing the input");
    let delimiter = [b',', b'\t', b';', b'|'][usize::from((flags >> 5) & 3)];
    let _ = Csv::read_with(&path, delimiter);
    let task = match flags & 3 {
        0 => Task::Binary,
        1 => Task::Multilabel,
        _ => Task::Multiclass,
    };
    let label_columns = match task {
        Task::Multilabel => vec!["a".to_owned(), "b".to_owned()],
        _ => vec!["label".to_owned()],
    };
    let spec = CsvSpec {
        csv: path,
        path_column: "path".into(),
        label_columns,
        task,
        patient_column: (flags & 4 != 0).then(|| "patient".into()),
        split_column: (flags & 8 != 0).then(|| "split".into()),
    };
    let _ = read_generic(&spec);
}
