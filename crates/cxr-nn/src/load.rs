//! Strict loading of named tensors into a [`tch::nn::VarStore`]: every
//! variable must be supplied with its exact shape, and every supplied tensor
//! must be used, unless a rule says it may be ignored. A mismatch lists the
//! missing, unexpected and wrongly shaped names instead of silently keeping
//! random weights.

use std::collections::BTreeMap;

use tch::nn::VarStore;

use crate::checkpoint::RawTensor;

// Defined with the crate's other errors so that `crate::error` depends on no
// module that depends back on it; re-exported so the path stays.
pub use crate::error::KeyMismatch;

/// Copies `tensors` into the variables of `vs` by name. Tensors for which
/// `ignore(name)` holds are skipped; anything else that does not match exactly
/// fails the whole load, leaving `vs` untouched.
///
/// # Errors
/// [`KeyMismatch`] naming every missing, unexpected and wrongly shaped key.
pub fn load_strict(
    vs: &mut VarStore,
    tensors: &BTreeMap<String, RawTensor>,
    ignore: impl Fn(&str) -> bool,
) -> Result<(), KeyMismatch> {
    let vars = vs.variables();
    let mut mismatch = KeyMismatch::default();
    for (name, t) in tensors {
        if ignore(name) {
            continue;
        }
        match vars.get(name) {
            None => mismatch.unexpected.push(name.clone()),
            Some(v) => {
                let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
                if shape != v.size() {
                    mismatch.wrong_shape.push((name.clone(), shape, v.size()));
                }
            }
        }
    }
    let mut missing: Vec<String> = vars
        .keys()
        .filter(|k| !tensors.contains_key(*k) || ignore(k))
        .cloned()
        .collect();
    missing.sort();
    mismatch.missing = missing;
    if !mismatch.is_empty() {
        return Err(mismatch);
    }
    tch::no_grad(|| {
        for (name, var) in &vars {
            let src = tensors[name]
                .to_tch()
                .to_kind(var.kind())
                .to_device(var.device());
            var.shallow_clone().copy_(&src);
        }
    });
    Ok(())
}
