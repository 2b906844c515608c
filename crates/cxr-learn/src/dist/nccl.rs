//! The real collective: NCCL through the `cudarc` crate's binding, one
//! process per GPU.
//!
//! cudarc loads `libcuda` and `libnccl` when first used, so this module
//! builds and links on machines without CUDA; [`NcclGroup::init`] checks
//! that both libraries load before touching them. Collectives run on the
//! device's default stream, the stream libtorch's kernels use, so they are
//! ordered with the surrounding computation without extra synchronisation.
#![allow(unsafe_code)] // FFI to NCCL: raw device pointers of libtorch tensors.

use std::ffi::c_void;
use std::sync::Arc;
use std::time::Duration;

use cudarc::driver::CudaContext;
use cudarc::nccl::{result, sys};
use tch::{Device, Kind, Tensor};

use super::Collective;
use super::launch::Launch;
use crate::error::Error;

/// An NCCL communicator over the ranks of a [`Launch`].
pub struct NcclGroup {
    comm: sys::ncclComm_t,
    rank: usize,
    world: usize,
    device: Device,
    // The device's primary context, current on the thread that built the
    // communicator (the one libtorch uses too); held for the group's life.
    _context: Arc<CudaContext>,
}

impl std::fmt::Debug for NcclGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcclGroup")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .field("device", &self.device)
            .finish()
    }
}

// The training loop issues every collective from one thread at a time; NCCL
// communicators may move between threads.
unsafe impl Send for NcclGroup {}
unsafe impl Sync for NcclGroup {}

/// What to do when NCCL cannot be loaded.
const NCCL_HINT: &str = "libnccl could not be loaded. Put the directory holding libnccl.so on \
LD_LIBRARY_PATH (PyTorch's pip wheels ship it as nvidia/nccl/lib/libnccl.so.2; a symlink named \
libnccl.so next to it is enough)";

impl NcclGroup {
    /// Joins the run `launch` describes on CUDA device `local_rank`: rank 0
    /// creates the NCCL id and hands it to the others through
    /// [`Launch::share_from_root`].
    ///
    /// # Errors
    /// No CUDA device for this local rank, CUDA or NCCL libraries missing,
    /// the rendezvous failing, or NCCL refusing the communicator.
    pub fn init(launch: &Launch, timeout: Duration) -> Result<Self, Error> {
        let visible = if tch::Cuda::is_available() {
            tch::Cuda::device_count() as usize
        } else {
            0
        };
        if launch.local_rank >= visible {
            return Err(Error::Nccl(format!(
                "rank {} (local rank {}) needs CUDA device {} but libtorch sees {visible}; \
                 data-parallel runs need one GPU per process",
                launch.rank, launch.local_rank, launch.local_rank
            )));
        }
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(Error::Nccl("libcuda could not be loaded".into()));
        }
        if !unsafe { sys::is_culib_present() } {
            return Err(Error::Nccl(NCCL_HINT.into()));
        }
        let context = CudaContext::new(launch.local_rank)
            .map_err(|e| Error::Nccl(format!("CUDA device {}: {e:?}", launch.local_rank)))?;
        let id = if launch.rank == 0 {
            let id = result::get_uniqueid().map_err(|e| Error::Nccl(format!("{e:?}")))?;
            Some(id.internal.iter().map(|&c| c as u8).collect::<Vec<u8>>())
        } else {
            None
        };
        let bytes = launch.share_from_root(id.as_deref(), 128, timeout)?;
        let mut unique = sys::ncclUniqueId { internal: [0; 128] };
        for (dst, src) in unique.internal.iter_mut().zip(&bytes) {
            *dst = *src as _;
        }
        let mut comm: sys::ncclComm_t = std::ptr::null_mut();
        unsafe {
            result::comm_init_rank(
                &mut comm,
                launch.world_size as i32,
                unique,
                launch.rank as i32,
            )
        }
        .map_err(|e| Error::Nccl(format!("ncclCommInitRank: {e:?}")))?;
        Ok(Self {
            comm,
            rank: launch.rank,
            world: launch.world_size,
            device: Device::Cuda(launch.local_rank),
            _context: context,
        })
    }

    fn check(&self, t: &Tensor) -> Result<sys::ncclDataType_t, Error> {
        if t.device() != self.device || !t.is_contiguous() {
            return Err(Error::Collective(format!(
                "NCCL needs contiguous tensors on {:?}, got one on {:?}",
                self.device,
                t.device()
            )));
        }
        data_type(t.kind())
    }
}

fn data_type(kind: Kind) -> Result<sys::ncclDataType_t, Error> {
    use sys::ncclDataType_t as D;
    Ok(match kind {
        Kind::Float => D::ncclFloat32,
        Kind::Double => D::ncclFloat64,
        Kind::Half => D::ncclFloat16,
        Kind::BFloat16 => D::ncclBfloat16,
        Kind::Int64 => D::ncclInt64,
        Kind::Int => D::ncclInt32,
        Kind::Uint8 => D::ncclUint8,
        Kind::Int8 => D::ncclInt8,
        other => {
            return Err(Error::Collective(format!(
                "NCCL cannot reduce {other:?} tensors"
            )));
        }
    })
}

fn nccl_err(op: &str) -> impl Fn(result::NcclError) -> Error + '_ {
    move |e| Error::Nccl(format!("{op}: {e:?}"))
}

impl Collective for NcclGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn device(&self) -> Device {
        self.device
    }

    fn all_reduce_sum(&self, t: &mut Tensor) -> Result<(), Error> {
        let dtype = self.check(t)?;
        let ptr = t.data_ptr();
        unsafe {
            result::all_reduce(
                ptr as *const c_void,
                ptr,
                t.numel(),
                dtype,
                sys::ncclRedOp_t::ncclSum,
                self.comm,
                std::ptr::null_mut(),
            )
        }
        .map_err(nccl_err("ncclAllReduce"))?;
        Ok(())
    }

    fn all_gather(&self, t: &Tensor) -> Result<Tensor, Error> {
        let dtype = self.check(t)?;
        let mut shape = t.size();
        if shape.is_empty() {
            shape.push(1);
        }
        shape[0] *= self.world as i64;
        let out = Tensor::empty(shape.as_slice(), (t.kind(), self.device));
        unsafe {
            result::all_gather(
                t.data_ptr() as *const c_void,
                out.data_ptr(),
                t.numel(),
                dtype,
                self.comm,
                std::ptr::null_mut(),
            )
        }
        .map_err(nccl_err("ncclAllGather"))?;
        Ok(out)
    }

    fn broadcast(&self, t: &mut Tensor, root: usize) -> Result<(), Error> {
        let dtype = self.check(t)?;
        let ptr = t.data_ptr();
        unsafe {
            result::broadcast(
                ptr as *const c_void,
                ptr,
                t.numel(),
                dtype,
                root as i32,
                self.comm,
                std::ptr::null_mut(),
            )
        }
        .map_err(nccl_err("ncclBroadcast"))?;
        Ok(())
    }
}

impl Drop for NcclGroup {
    fn drop(&mut self) {
        if !self.comm.is_null() {
            // Nothing useful can be done with an error while tearing down.
            let _ = unsafe { result::comm_destroy(self.comm) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_nccl_types() {
        assert_eq!(
            data_type(Kind::Float).unwrap(),
            sys::ncclDataType_t::ncclFloat32
        );
        assert_eq!(
            data_type(Kind::BFloat16).unwrap(),
            sys::ncclDataType_t::ncclBfloat16
        );
        assert!(
            data_type(Kind::ComplexFloat)
                .unwrap_err()
                .to_string()
                .contains("ComplexFloat")
        );
    }

    /// Without a GPU the group refuses to start, naming what is missing,
    /// before any rendezvous.
    #[test]
    fn init_without_a_gpu_says_so() {
        if tch::Cuda::is_available() {
            return;
        }
        let launch = Launch {
            rank: 1,
            world_size: 2,
            local_rank: 0,
            ..Launch::single()
        };
        let e = NcclGroup::init(&launch, Duration::from_millis(10))
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs CUDA device 0 but libtorch sees 0"), "{e}");
    }
}
