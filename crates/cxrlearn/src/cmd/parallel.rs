//! Joining a data-parallel run: the launcher's environment decides whether
//! this process is one rank of several (torchrun, Slurm `srun`), and each
//! rank trains on its own GPU, `cuda:LOCAL_RANK`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use cxr_learn::dist::nccl::NcclGroup;
use cxr_learn::dist::{DataParallel, Launch};
use cxr_nn::device::DeviceRequest;
use cxr_nn::tch::Device;

/// How long ranks wait for each other at start-up, unless
/// `CXRLEARN_DIST_TIMEOUT` (seconds) says otherwise.
const DEFAULT_TIMEOUT_S: u64 = 600;

/// The process group and this rank's device. Without launcher variables:
/// one process on the requested device.
///
/// # Errors
/// Malformed launcher variables, a CPU or a foreign GPU asked for in a
/// data-parallel run, or NCCL failing to start.
pub fn join(requested: DeviceRequest) -> Result<(DataParallel, Device)> {
    let launch = Launch::from_env()?;
    if !launch.is_distributed() {
        let device = requested.resolve()?;
        if device.is_cuda() {
            // Fixed input shapes: let cuDNN pick the fastest algorithms.
            cxr_nn::tch::Cuda::cudnn_set_benchmark(true);
        }
        return Ok((DataParallel::single(), device));
    }
    match requested {
        DeviceRequest::Cpu => bail!(
            "this process is rank {} of {} ({:?} launch), and data-parallel training runs on GPUs \
             with NCCL; drop --device cpu, or unset the launcher's variables for a CPU run",
            launch.rank,
            launch.world_size,
            launch.launcher
        ),
        DeviceRequest::Cuda(i) if i != launch.local_rank => bail!(
            "--device cuda:{i}: in a data-parallel run each rank uses cuda:LOCAL_RANK \
             (here cuda:{}); pass --device auto or cuda",
            launch.local_rank
        ),
        _ => {}
    }
    let timeout = std::env::var("CXRLEARN_DIST_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_TIMEOUT_S);
    let group = NcclGroup::init(&launch, Duration::from_secs(timeout))?;
    cxr_nn::tch::Cuda::cudnn_set_benchmark(true);
    Ok((
        DataParallel::new(Arc::new(group)),
        Device::Cuda(launch.local_rank),
    ))
}
