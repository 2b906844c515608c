//! Gradient buckets: the gradients of a step packed into a few flat buffers
//! of at most a set size, so the all-reduce costs a few large collectives
//! instead of one small one per parameter.
//!
//! Buckets follow the parameters in reverse order, as PyTorch's DDP does
//! (the last layers' gradients are ready first in the backward pass). tch
//! exposes no backward hooks, so the buckets are reduced after the backward
//! pass rather than overlapped with it.

use tch::{Kind, Tensor};

use super::Collective;
use crate::error::Error;

/// A partition of a gradient list into buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buckets {
    /// Indices into the gradient list, per bucket.
    pub groups: Vec<Vec<usize>>,
}

impl Buckets {
    /// Buckets of at most `cap` bytes over `grads` (one kind per bucket; a
    /// gradient larger than `cap` is a bucket of its own).
    pub fn plan(grads: &[Tensor], cap: usize) -> Self {
        let sizes: Vec<(usize, Kind)> = grads
            .iter()
            .map(|g| (g.numel() * g.kind().elt_size_in_bytes(), g.kind()))
            .collect();
        Self::plan_sizes(&sizes, cap)
    }

    /// [`Buckets::plan`] from `(bytes, kind)` per gradient.
    pub fn plan_sizes(sizes: &[(usize, Kind)], cap: usize) -> Self {
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut current: Vec<usize> = Vec::new();
        let mut bytes = 0;
        let mut kind = None;
        for i in (0..sizes.len()).rev() {
            let (size, k) = sizes[i];
            let fits = bytes + size <= cap && kind.is_none_or(|c| c == k);
            if !current.is_empty() && !fits {
                groups.push(std::mem::take(&mut current));
                bytes = 0;
            }
            current.push(i);
            bytes += size;
            kind = Some(k);
        }
        if !current.is_empty() {
            groups.push(current);
        }
        Self { groups }
    }

    /// Sums every gradient across `group`'s ranks and multiplies by
    /// `scale`, in place, one collective per bucket.
    ///
    /// # Errors
    /// When a collective fails.
    pub fn all_reduce(
        &self,
        grads: &[Tensor],
        group: &dyn Collective,
        scale: f64,
    ) -> Result<(), Error> {
        for members in &self.groups {
            let parts: Vec<Tensor> = members.iter().map(|&i| grads[i].flatten(0, -1)).collect();
            let mut flat = Tensor::cat(&parts, 0);
            group.all_reduce_sum(&mut flat)?;
            if scale != 1.0 {
                flat *= scale;
            }
            let mut offset = 0;
            for &i in members {
                let n = grads[i].numel() as i64;
                grads[i]
                    .shallow_clone()
                    .copy_(&flat.narrow(0, offset, n).view_as(&grads[i]));
                offset += n;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::threads::ThreadGroup;

    #[test]
    fn plan_respects_the_cap_order_and_kinds() {
        let f = Kind::Float;
        let sizes = [
            (40, f),
            (40, f),
            (100, f),
            (8, f),
            (8, Kind::Double),
            (30, f),
        ];
        let b = Buckets::plan_sizes(&sizes, 64);
        // Reverse order; 100 alone; a kind change starts a bucket.
        assert_eq!(
            b.groups,
            vec![vec![5], vec![4], vec![3], vec![2], vec![1], vec![0]]
        );
        let b = Buckets::plan_sizes(&[(10, f); 7], 32);
        assert_eq!(b.groups, vec![vec![6, 5, 4], vec![3, 2, 1], vec![0]]);
        let mut seen: Vec<usize> = b.groups.concat();
        seen.sort_unstable();
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
        assert!(Buckets::plan_sizes(&[], 32).groups.is_empty());
    }

    /// Two thread ranks: every gradient becomes the scaled sum of both
    /// ranks' values, whatever the bucket boundaries.
    #[test]
    fn all_reduce_sums_and_scales_every_gradient() {
        for cap in [4, 24, 1 << 20] {
            let ranks = ThreadGroup::new(2);
            let results: Vec<Vec<Vec<f32>>> = std::thread::scope(|s| {
                let handles: Vec<_> = ranks
                    .iter()
                    .map(|g| {
                        s.spawn(move || {
                            let r = g.rank() as f32;
                            let grads = vec![
                                Tensor::from_slice(&[1.0f32 + r, 2.0, 3.0]),
                                Tensor::from_slice(&[10.0f32 * (r + 1.0); 4]).view([2, 2]),
                                Tensor::from_slice(&[-1.0f32 - r]),
                            ];
                            Buckets::plan(&grads, cap)
                                .all_reduce(&grads, g, 0.5)
                                .unwrap();
                            grads
                                .iter()
                                .map(|t| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap())
                                .collect()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for r in &results {
                assert_eq!(r[0], [1.5, 2.0, 3.0]);
                assert_eq!(r[1], [15.0; 4]);
                assert_eq!(r[2], [-1.5]);
            }
        }
    }
}
