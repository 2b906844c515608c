//! Strict loading of named tensors into a [`tch::nn::VarStore`]: every
//! variable must be supplied with its exact shape, and every supplied tensor
//! must be used, unless a rule says it may be ignored. A mismatch lists the
//! missing, unexpected and wrongly shaped names instead of silently keeping
//! random weights.

use std::collections::BTreeMap;

use tch::nn::VarStore;

use crate::checkpoint::RawTensor;

/// Names that did not line up between a checkpoint and an architecture.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("checkpoint does not match the architecture: {}", self.describe())]
pub struct KeyMismatch {
    /// Variables of the architecture the checkpoint lacks.
    pub missing: Vec<String>,
    /// Checkpoint tensors the architecture has no variable for.
    pub unexpected: Vec<String>,
    /// `(name, checkpoint shape, architecture shape)`.
    pub wrong_shape: Vec<(String, Vec<i64>, Vec<i64>)>,
}

impl KeyMismatch {
    fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.wrong_shape.is_empty()
    }
}

fn list(names: &[String]) -> String {
    let head: Vec<&str> = names.iter().take(8).map(String::as_str).collect();
    let more = if names.len() > 8 {
        format!(", ... ({} in all)", names.len())
    } else {
        String::new()
    };
    format!("{}{more}", head.join(", "))
}

impl KeyMismatch {
    /// The missing, unexpected and wrongly shaped names, eight of each at most.
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!("missing keys: {}", list(&self.missing)));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!("unexpected keys: {}", list(&self.unexpected)));
        }
        if !self.wrong_shape.is_empty() {
            let shapes: Vec<String> = self
                .wrong_shape
                .iter()
                .map(|(n, c, a)| format!("{n} (checkpoint {c:?}, model {a:?})"))
                .collect();
            parts.push(format!("wrong shapes: {}", list(&shapes)));
        }
        parts.join("; ")
    }
}

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
