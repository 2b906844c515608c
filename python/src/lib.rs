//! `cxrlearn._native`: the compiled half of the Python package `cxrlearn`.
//!
//! Each function here is a thin call into the cxrlearn crates (the same code
//! the command-line tool runs); the typed, documented API is the Python
//! layer in `python/cxrlearn/`. Every entry point runs under
//! [`errors::guard`], so a Rust error arrives as a Python exception with the
//! CLI's message and a panic as `cxrlearn.CxrError`; long computations
//! release the GIL.

mod data;
mod errors;
mod nn;
mod stats;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    errors::install_panic_hook();
    m.add("CxrError", py.get_type::<errors::CxrError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<data::NativeStore>()?;
    m.add_class::<stats::NativeSource>()?;
    m.add_class::<nn::NativeProbe>()?;
    m.add_function(wrap_pyfunction!(data::preprocessing, m)?)?;
    m.add_function(wrap_pyfunction!(data::convert, m)?)?;
    m.add_function(wrap_pyfunction!(data::phantom, m)?)?;
    m.add_function(wrap_pyfunction!(stats::roc_auc, m)?)?;
    m.add_function(wrap_pyfunction!(stats::delong, m)?)?;
    m.add_function(wrap_pyfunction!(stats::evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(nn::models_json, m)?)?;
    m.add_function(wrap_pyfunction!(nn::load_checkpoint, m)?)?;
    m.add_function(wrap_pyfunction!(nn::import_weights, m)?)?;
    m.add_function(wrap_pyfunction!(nn::features, m)?)?;
    m.add_function(wrap_pyfunction!(errors::_panic_for_test, m)?)?;
    m.add_function(wrap_pyfunction!(nn::_torch_error_for_test, m)?)?;
    Ok(())
}
