//! The model-selection metric: macro AUC exactly as `evaluate` reports it
//! (mean over labels that have both classes), so what selects an epoch or a
//! C is what the report shows.

/// Per-label AUC (`None` without both classes) and their macro mean, from
/// row-major `[n, k]` targets (NaN where unknown) and scores.
pub fn macro_auc(targets: &[f32], scores: &[f32], k: usize) -> (Option<f64>, Vec<Option<f64>>) {
    assert_eq!(
        targets.len(),
        scores.len(),
        "targets and scores differ in size"
    );
    let n = targets.len().checked_div(k).unwrap_or(0);
    let per_label: Vec<Option<f64>> = (0..k)
        .map(|j| {
            let (t, s): (Vec<bool>, Vec<f64>) = (0..n)
                .filter(|&i| !targets[i * k + j].is_nan())
                .map(|i| (targets[i * k + j] > 0.5, f64::from(scores[i * k + j])))
                .unzip();
            cxr_stats::roc_auc(&t, &s).ok().flatten()
        })
        .collect();
    let valid: Vec<f64> = per_label.iter().flatten().copied().collect();
    let mean = (!valid.is_empty()).then(|| valid.iter().sum::<f64>() / valid.len() as f64);
    (mean, per_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macro_skips_single_class_labels_and_unknowns() {
        // Label 0: perfect; label 1: all unknown but one -> no AUC.
        let targets = [1.0, f32::NAN, 0.0, 1.0, 1.0, f32::NAN, 0.0, f32::NAN];
        let scores = [0.9, 0.1, 0.2, 0.5, 0.8, 0.3, 0.1, 0.7];
        let (mean, per) = macro_auc(&targets, &scores, 2);
        assert_eq!(per, vec![Some(1.0), None]);
        assert_eq!(mean, Some(1.0));
    }
}
