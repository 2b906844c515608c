//! The distributed sampler: which rows of every global batch a rank loads.
//!
//! Every rank draws the same epoch order (same seed, same epoch), cuts it
//! into global batches of `batch_size` exactly as a single process would
//! (dropping the last partial batch), and takes its contiguous slice of
//! `batch_size / world` rows of each. The global batch at step `t` is thus
//! the single-process batch `t`, and a run resumed at any step on any
//! number of ranks sees the same data. (PyTorch's `DistributedSampler`
//! deals rows round-robin instead, so its batches differ from the
//! single-process ones.)

use crate::error::Error;

/// The per-rank size of a global batch, or why it cannot be split.
///
/// # Errors
/// When `batch_size` is not a positive multiple of `world`.
pub fn local_batch(batch_size: usize, world: usize) -> Result<usize, Error> {
    if world == 0 || batch_size == 0 || !batch_size.is_multiple_of(world) {
        return Err(Error::UnevenBatch { batch_size, world });
    }
    Ok(batch_size / world)
}

/// `rank`'s rows of each full global batch of `order`, starting at global
/// batch `skip`.
///
/// # Errors
/// As [`local_batch`].
pub fn shard_batches(
    order: &[usize],
    batch_size: usize,
    rank: usize,
    world: usize,
    skip: usize,
) -> Result<Vec<Vec<usize>>, Error> {
    let local = local_batch(batch_size, world)?;
    Ok(order
        .chunks_exact(batch_size)
        .skip(skip)
        .map(|b| b[rank * local..(rank + 1) * local].to_vec())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_partition_each_single_process_batch() {
        let order: Vec<usize> = (0..103).map(|i| (i * 37) % 103).collect();
        let single = shard_batches(&order, 12, 0, 1, 0).unwrap();
        assert_eq!(single.len(), 8); // 103 / 12, last partial batch dropped
        for world in [2, 3, 4] {
            let shards: Vec<_> = (0..world)
                .map(|r| shard_batches(&order, 12, r, world, 0).unwrap())
                .collect();
            for (t, batch) in single.iter().enumerate() {
                let union: Vec<usize> = shards.iter().flat_map(|s| s[t].clone()).collect();
                assert_eq!(&union, batch, "world {world}, step {t}");
                assert!(shards.iter().all(|s| s[t].len() == 12 / world));
            }
        }
        // Resuming at batch 5 gives the tail of the same shards.
        let tail = shard_batches(&order, 12, 1, 2, 5).unwrap();
        assert_eq!(tail, shard_batches(&order, 12, 1, 2, 0).unwrap()[5..]);
    }

    #[test]
    fn a_batch_that_does_not_split_is_refused() {
        let e = shard_batches(&[0, 1, 2], 10, 0, 4, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("multiple of the number of ranks (4)"), "{e}");
        assert_eq!(local_batch(32, 4).unwrap(), 8);
    }
}
