//! In-process ranks on threads, exchanging through shared host memory.
//!
//! For tests only: it drives the same data-parallel code path as NCCL so
//! that "N ranks give the single-process weights" can be checked on a CPU
//! machine. Real runs use [`super::nccl::NcclGroup`]; the CLI never builds
//! this one.

use std::sync::{Arc, Barrier, Mutex};

use tch::{Device, Tensor};

use super::{Collective, host_f64};
use crate::error::Error;

#[derive(Debug)]
struct Shared {
    barrier: Barrier,
    slots: Mutex<Vec<Vec<f64>>>,
}

/// One rank of an in-process group; hand each to its own thread.
#[derive(Debug, Clone)]
pub struct ThreadGroup {
    rank: usize,
    world: usize,
    shared: Arc<Shared>,
}

impl ThreadGroup {
    /// The `world` ranks of a new group, in rank order.
    pub fn new(world: usize) -> Vec<Self> {
        let world = world.max(1);
        let shared = Arc::new(Shared {
            barrier: Barrier::new(world),
            slots: Mutex::new(vec![Vec::new(); world]),
        });
        (0..world)
            .map(|rank| Self {
                rank,
                world,
                shared: shared.clone(),
            })
            .collect()
    }

    /// Publishes `mine`, waits for every rank, and returns all ranks'
    /// buffers in rank order.
    fn exchange(&self, mine: Vec<f64>) -> Result<Vec<Vec<f64>>, Error> {
        let poisoned = |_| Error::Collective("another rank panicked".into());
        self.shared.slots.lock().map_err(poisoned)?[self.rank] = mine;
        self.shared.barrier.wait();
        let all = self.shared.slots.lock().map_err(poisoned)?.clone();
        // Nobody may overwrite its slot before every rank has read.
        self.shared.barrier.wait();
        let n = all[0].len();
        if all.iter().any(|v| v.len() != n) {
            let sizes: Vec<usize> = all.iter().map(Vec::len).collect();
            return Err(Error::Collective(format!(
                "ranks passed buffers of different sizes {sizes:?}"
            )));
        }
        Ok(all)
    }
}

fn write_back(t: &mut Tensor, values: &[f64]) {
    let src = Tensor::from_slice(values)
        .to_kind(t.kind())
        .to_device(t.device())
        .view(t.size().as_slice());
    tch::no_grad(|| t.copy_(&src));
}

impl Collective for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn device(&self) -> Device {
        Device::Cpu
    }

    fn all_reduce_sum(&self, t: &mut Tensor) -> Result<(), Error> {
        let all = self.exchange(host_f64(t)?)?;
        // Summed in rank order on every rank: identical results everywhere.
        let mut sum = vec![0.0; all[0].len()];
        for v in &all {
            for (s, x) in sum.iter_mut().zip(v) {
                *s += x;
            }
        }
        write_back(t, &sum);
        Ok(())
    }

    fn all_gather(&self, t: &Tensor) -> Result<Tensor, Error> {
        let all = self.exchange(host_f64(t)?)?;
        let mut shape = t.size();
        if shape.is_empty() {
            shape.push(1);
        }
        shape[0] *= self.world as i64;
        let flat: Vec<f64> = all.concat();
        Ok(Tensor::from_slice(&flat)
            .to_kind(t.kind())
            .to_device(t.device())
            .view(shape.as_slice()))
    }

    fn broadcast(&self, t: &mut Tensor, root: usize) -> Result<(), Error> {
        if root >= self.world {
            return Err(Error::Collective(format!(
                "broadcast from rank {root} of {}",
                self.world
            )));
        }
        let all = self.exchange(host_f64(t)?)?;
        write_back(t, &all[root]);
        Ok(())
    }
}

/// Runs `f(rank)` on `world` threads, each with its rank of a new group, and
/// returns their results in rank order.
///
/// # Panics
/// When a rank's thread panics.
pub fn run_ranks<T: Send>(world: usize, f: impl Fn(ThreadGroup) -> T + Sync) -> Vec<T> {
    let ranks = ThreadGroup::new(world);
    std::thread::scope(|s| {
        let handles: Vec<_> = ranks
            .into_iter()
            .map(|g| {
                let f = &f;
                s.spawn(move || f(g))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a rank panicked"))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn gather_and_broadcast_follow_rank_order() {
        let out = run_ranks(3, |g| {
            let r = g.rank() as f32;
            let mine = Tensor::from_slice(&[r, 10.0 * r]).view([1, 2]);
            let gathered = g.all_gather(&mine).unwrap();
            let mut b = Tensor::from_slice(&[r + 100.0]);
            g.broadcast(&mut b, 2).unwrap();
            let mut s = Tensor::from_slice(&[1.0f64, r as f64]);
            g.all_reduce_sum(&mut s).unwrap();
            (
                gathered.size(),
                Vec::<f32>::try_from(gathered.flatten(0, -1)).unwrap(),
                f32::try_from(b).unwrap(),
                Vec::<f64>::try_from(s).unwrap(),
                mine.kind() == Kind::Float,
            )
        });
        for (size, gathered, b, s, kind_kept) in out {
            assert_eq!(size, [3, 2]);
            assert_eq!(gathered, [0.0, 0.0, 1.0, 10.0, 2.0, 20.0]);
            assert_eq!(b, 102.0);
            assert_eq!(s, [3.0, 3.0]);
            assert!(kind_kept);
        }
    }

    #[test]
    fn mismatched_sizes_are_an_error_on_every_rank() {
        let out = run_ranks(2, |g| {
            let mut t = Tensor::zeros([g.rank() as i64 + 1], (Kind::Float, Device::Cpu));
            g.all_reduce_sum(&mut t)
        });
        for r in out {
            let e = r.unwrap_err();
            assert!(
                matches!(&e, Error::Collective(m) if m.contains("different sizes")),
                "{e}"
            );
        }
    }
}
