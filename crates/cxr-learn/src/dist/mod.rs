//! Data-parallel training: one process per GPU, each computing the gradient
//! of its slice of every global batch, gradients summed across processes
//! before every update.
//!
//! - [`launch`]: who am I — rank, world size and rendezvous address from
//!   torchrun's or Slurm's environment.
//! - [`shard`]: which rows of each global batch this rank loads.
//! - [`bucket`]: gradients flattened into a few large buffers, so a step
//!   costs a few collectives instead of one per parameter.
//! - [`Collective`]: the operations the loops need, with three
//!   implementations: [`Single`] (one process, no-ops), [`nccl::NcclGroup`]
//!   (real runs, through the `cudarc` crate's NCCL binding) and
//!   [`threads::ThreadGroup`] (in-process ranks on threads, for tests only).
//!
//! The global batch is cut into contiguous per-rank slices, so the union of
//! the ranks' batches at step `t` is the single-process batch `t`. With a
//! loss that is a sum over samples (divided by a global count) and no
//! normalisation across the batch, `N` ranks reproduce the single-process
//! weights up to floating-point reordering; batch norm sees per-rank
//! batches, as in PyTorch's DDP without SyncBatchNorm.

pub mod bucket;
pub mod launch;
pub mod nccl;
pub mod shard;
pub mod threads;

use std::sync::Arc;

use tch::{Device, Kind, Tensor};

use crate::error::Error;

pub use bucket::Buckets;
pub use launch::Launch;

/// The collective operations data-parallel training needs. Every rank calls
/// the same operations in the same order with tensors of the same shape and
/// kind; results are identical on every rank.
pub trait Collective: Send + Sync {
    /// This process's rank, `0..world_size()`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn world_size(&self) -> usize;
    /// Where this collective's tensors live (NCCL moves only its own GPU's
    /// memory).
    fn device(&self) -> Device;
    /// Sums `t` element-wise across ranks, in place (`t` contiguous).
    ///
    /// # Errors
    /// When the transport fails or ranks disagree on the size.
    fn all_reduce_sum(&self, t: &mut Tensor) -> Result<(), Error>;
    /// Every rank's `t` (same shape everywhere) concatenated along
    /// dimension 0 in rank order.
    ///
    /// # Errors
    /// When the transport fails or ranks disagree on the size.
    fn all_gather(&self, t: &Tensor) -> Result<Tensor, Error>;
    /// Overwrites `t` on every rank with rank `root`'s `t`.
    ///
    /// # Errors
    /// When the transport fails or ranks disagree on the size.
    fn broadcast(&self, t: &mut Tensor, root: usize) -> Result<(), Error>;
}

/// One process: every collective is the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn all_reduce_sum(&self, _t: &mut Tensor) -> Result<(), Error> {
        Ok(())
    }
    fn all_gather(&self, t: &Tensor) -> Result<Tensor, Error> {
        Ok(t.shallow_clone())
    }
    fn broadcast(&self, _t: &mut Tensor, _root: usize) -> Result<(), Error> {
        Ok(())
    }
}

/// Default bucket size: PyTorch DDP's 25 MiB.
pub const BUCKET_BYTES: usize = 25 << 20;

/// A process group as the training loops use it.
#[derive(Clone)]
pub struct DataParallel {
    group: Arc<dyn Collective>,
    bucket_bytes: usize,
}

impl std::fmt::Debug for DataParallel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataParallel")
            .field("rank", &self.rank())
            .field("world_size", &self.world_size())
            .field("bucket_bytes", &self.bucket_bytes)
            .finish()
    }
}

impl Default for DataParallel {
    fn default() -> Self {
        Self::single()
    }
}

impl DataParallel {
    /// One process.
    pub fn single() -> Self {
        Self::new(Arc::new(Single))
    }

    /// Over `group`, with [`BUCKET_BYTES`] buckets.
    pub fn new(group: Arc<dyn Collective>) -> Self {
        Self {
            group,
            bucket_bytes: BUCKET_BYTES,
        }
    }

    /// The same group with buckets of at most `bytes`.
    pub fn with_bucket_bytes(mut self, bytes: usize) -> Self {
        self.bucket_bytes = bytes.max(1);
        self
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.group.rank()
    }

    /// Number of ranks.
    pub fn world_size(&self) -> usize {
        self.group.world_size()
    }

    /// Whether this rank writes checkpoints, logs and exports (rank 0).
    pub fn is_main(&self) -> bool {
        self.rank() == 0
    }

    /// The underlying collective.
    pub fn group(&self) -> &dyn Collective {
        self.group.as_ref()
    }

    /// Sums the gradients of `params` across ranks and multiplies them by
    /// `scale` (1 for losses divided by a global count, `1/world` for
    /// per-rank means), bucket by bucket. Parameters without a gradient are
    /// skipped; every rank has the same graph, so the same ones.
    ///
    /// # Errors
    /// When a collective fails.
    pub fn sync_grads(&self, params: &[Tensor], scale: f64) -> Result<(), Error> {
        if self.world_size() == 1 {
            return Ok(());
        }
        let grads: Vec<Tensor> = params
            .iter()
            .map(Tensor::grad)
            .filter(Tensor::defined)
            .collect();
        let buckets = Buckets::plan(&grads, self.bucket_bytes);
        tch::no_grad(|| buckets.all_reduce(&grads, self.group(), scale))
    }

    /// Copies rank 0's values of `params` to every rank (run once before
    /// training, so every rank starts from the same weights whatever its
    /// initialisation).
    ///
    /// # Errors
    /// When a collective fails.
    pub fn broadcast_params(&self, params: &[Tensor]) -> Result<(), Error> {
        if self.world_size() == 1 {
            return Ok(());
        }
        tch::no_grad(|| {
            for p in params {
                let mut flat = p.contiguous();
                self.group.broadcast(&mut flat, 0)?;
                p.shallow_clone().copy_(&flat);
            }
            Ok(())
        })
    }

    /// `values` summed across ranks (in f64).
    ///
    /// # Errors
    /// When a collective fails.
    pub fn sum(&self, values: &[f64]) -> Result<Vec<f64>, Error> {
        if self.world_size() == 1 {
            return Ok(values.to_vec());
        }
        let mut t = Tensor::from_slice(values).to_device(self.group.device());
        self.group.all_reduce_sum(&mut t)?;
        Vec::<f64>::try_from(t.to_device(Device::Cpu)).map_err(|e| Error::Collective(e.to_string()))
    }

    /// Every rank's rows of `t` (same shape everywhere) in rank order.
    ///
    /// # Errors
    /// When a collective fails.
    pub fn all_gather(&self, t: &Tensor) -> Result<Tensor, Error> {
        if self.world_size() == 1 {
            return Ok(t.shallow_clone());
        }
        self.group.all_gather(&t.contiguous())
    }
}

/// A tensor's elements as f64, on the host.
pub(crate) fn host_f64(t: &Tensor) -> Result<Vec<f64>, Error> {
    Vec::<f64>::try_from(
        t.to_device(Device::Cpu)
            .to_kind(Kind::Double)
            .flatten(0, -1),
    )
    .map_err(|e| Error::Collective(e.to_string()))
}
