//! The errors of mapping a checkpoint onto an architecture: strict loading's
//! [`KeyMismatch`] ([`crate::load`]) and the registry import's [`ImportError`]
//! ([`crate::import`]).

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
    pub(crate) fn is_empty(&self) -> bool {
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

/// Why a checkpoint does not fit a registry entry.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Keys missing, unexpected or wrongly shaped.
    #[error(
        "{mismatch} (model '{model}'; {ignored} tensor(s) ignored on purpose; is this the right model or file?)"
    )]
    Keys {
        /// The entry's name.
        model: &'static str,
        /// The mismatch.
        mismatch: KeyMismatch,
        /// How many tensors the entry ignored on purpose.
        ignored: usize,
    },
    /// The checkpoint holds the other variant of the entry's method (a
    /// ResNet-18 release offered as the ResNet-50 entry, or the reverse), for
    /// which the registry has its own entry.
    #[error(
        "checkpoint holds a {found}, but model '{model}' is the {expected} variant of {method}: use --model {use_instead}"
    )]
    WrongVariant {
        /// The entry asked for.
        model: &'static str,
        /// Its pretraining method.
        method: &'static str,
        /// The architecture the checkpoint's tensors describe (`ResNet-18`).
        found: String,
        /// The entry's architecture (`ResNet-50`).
        expected: String,
        /// The entry that fits the checkpoint.
        use_instead: &'static str,
    },
    /// Two checkpoint tensors map onto the same name.
    #[error("checkpoint tensors '{}' and '{}' both map onto '{name}'", sources.0, sources.1)]
    Duplicate {
        /// The name both map onto.
        name: String,
        /// The two source names.
        sources: (String, String),
    },
}
