//! Rust errors as Python exceptions, with the message the CLI prints after
//! `error: `: `FileNotFoundError` when a file is missing, `ValueError` for a
//! bad argument or setting, `cxrlearn.CxrError` for the rest. A panic (a
//! bug) is caught at the boundary and raised as `CxrError` too, never as
//! pyo3's `PanicException`, which derives from `BaseException` and would
//! escape a notebook's `except Exception`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use cxr_data::error::DataError;
use cxr_learn::error::Error as LearnError;
use cxr_nn::NnError;
use cxr_nn::checkpoint::CheckpointError;
use cxr_stats::StatsError;
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyValueError};
use pyo3::prelude::*;

pyo3::create_exception!(
    cxrlearn,
    CxrError,
    PyException,
    "An error of cxrlearn that is neither a bad argument (ValueError) nor a missing file \
     (FileNotFoundError): a malformed input file, a checkpoint that does not fit, a failed \
     computation. Its message is the one the command-line tool prints."
);

/// How an error reaches Python.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Value,
    NotFound,
    Other,
}

fn not_found(kind: std::io::ErrorKind) -> bool {
    kind == std::io::ErrorKind::NotFound
}

/// The class of one error of the chain, when it decides one.
fn class_of(e: &(dyn std::error::Error + 'static)) -> Option<Class> {
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        return not_found(io.kind()).then_some(Class::NotFound);
    }
    if let Some(e) = e.downcast_ref::<StatsError>() {
        return Some(match e {
            StatsError::Io { kind, .. } if not_found(*kind) => Class::NotFound,
            StatsError::InFile { error, .. } => return class_of(error.as_ref()),
            StatsError::LengthMismatch { .. }
            | StatsError::NonFiniteScore { .. }
            | StatsError::BadWeight { .. }
            | StatsError::TooManyReplicates { .. }
            | StatsError::Config(_)
            | StatsError::NoSubgroupColumn { .. }
            | StatsError::UnknownResample { .. } => Class::Value,
            _ => Class::Other,
        });
    }
    if let Some(e) = e.downcast_ref::<DataError>() {
        return Some(match e {
            DataError::Io { error, .. } if not_found(error.kind()) => Class::NotFound,
            DataError::InvalidOption { .. }
            | DataError::Config(_)
            | DataError::UnknownPreset { .. }
            | DataError::UnknownResizePolicy { .. }
            | DataError::UnknownTask { .. }
            | DataError::PhantomConfig(_) => Class::Value,
            _ => Class::Other,
        });
    }
    if let Some(e) = e.downcast_ref::<CheckpointError>() {
        return Some(match e {
            CheckpointError::Io { source, .. } if not_found(source.kind()) => Class::NotFound,
            _ => Class::Other,
        });
    }
    if let Some(e) = e.downcast_ref::<NnError>() {
        return Some(match e {
            NnError::UnknownModel { .. } | NnError::InputSize { .. } => Class::Value,
            _ => Class::Other,
        });
    }
    if let Some(e) = e.downcast_ref::<LearnError>() {
        return Some(match e {
            LearnError::ProbeSingleClass { .. }
            | LearnError::ProbeSingleClassOverall
            | LearnError::ProbeShape { .. }
            | LearnError::ProbeC { .. }
            | LearnError::NonFiniteFeatures
            | LearnError::UnknownModel { .. }
            | LearnError::Pooling { .. }
            | LearnError::InputSize { .. } => Class::Value,
            _ => Class::Other,
        });
    }
    None
}

/// The Python exception for `e`: the CLI's message, the class of the first
/// error in the chain that decides one.
pub fn to_py(e: anyhow::Error) -> PyErr {
    let message = format!("{e:#}");
    let class = e.chain().find_map(class_of).unwrap_or(Class::Other);
    match class {
        Class::Value => PyValueError::new_err(message),
        Class::NotFound => PyFileNotFoundError::new_err(message),
        Class::Other => CxrError::new_err(message),
    }
}

/// `?` for library results at the boundary.
pub trait OrPy<T> {
    /// The value, or the error as its Python exception.
    fn py(self) -> PyResult<T>;
}

impl<T, E: Into<anyhow::Error>> OrPy<T> for Result<T, E> {
    fn py(self) -> PyResult<T> {
        self.map_err(|e| to_py(e.into()))
    }
}

/// A bad argument, raised as `ValueError`.
pub fn value_error(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}

thread_local! {
    /// Whether this thread is inside [`guard`], whose panics become
    /// exceptions and so are not printed by the panic hook.
    static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs a panic hook that stays quiet for panics [`guard`] turns into
/// exceptions (the message is the exception's; a notebook should not also
/// get a Rust backtrace on stderr) and prints the others as usual.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !GUARDED.with(std::cell::Cell::get) {
            default(info);
        }
    }));
}

/// The useful line of a panic's text: a libtorch exception unwrapped by
/// tch (`called Result::unwrap() on an Err value: Torch("...")`) is cut to
/// libtorch's message, without its C++ stack.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    match text.split_once("Torch(\"") {
        Some((_, rest)) => {
            let message = rest
                .split("\\nException raised from")
                .next()
                .unwrap_or(rest);
            format!("libtorch: {}", message.trim_end_matches("\")"))
        }
        None => text,
    }
}

/// Runs `f`, turning a panic into `CxrError` (a bug in cxrlearn; the
/// message says so and carries the panic's text). tch's infallible calls
/// panic on a libtorch exception, so this also catches those.
pub fn guard<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    let outer = GUARDED.with(|g| g.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(outer));
    result.unwrap_or_else(|payload| {
        Err(CxrError::new_err(format!(
            "internal error (a bug in cxrlearn; please report it): {}",
            panic_text(payload.as_ref())
        )))
    })
}

/// Panics on purpose, for the test that a panic reaches Python as
/// `CxrError` and not as `PanicException`.
#[pyfunction]
pub fn _panic_for_test() -> PyResult<()> {
    guard(|| panic!("deliberate panic for the test suite"))
}
