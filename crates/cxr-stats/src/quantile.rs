//! Percentiles with the same definition as NumPy's default (`method="linear"`),
//! so intervals can be checked against `np.percentile` directly.

/// The `q`-quantile (`0 <= q <= 1`) of `sorted`, which must be sorted ascending
/// and non-empty. Linear interpolation between closest ranks, as `np.percentile`.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "percentile of an empty sample");
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn matches_numpy_linear() {
        // np.percentile([1, 2, 3, 4, 10], [2.5, 50, 97.5]) == [1.1, 3.0, 9.4]
        let v = [1.0, 2.0, 3.0, 4.0, 10.0];
        assert!((percentile(&v, 0.025) - 1.1).abs() < 1e-12);
        assert!((percentile(&v, 0.5) - 3.0).abs() < 1e-12);
        assert!((percentile(&v, 0.975) - 9.4).abs() < 1e-12);
        assert_eq!(percentile(&[7.0], 0.3), 7.0);
    }
}
