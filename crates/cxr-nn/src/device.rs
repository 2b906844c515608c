//! Device selection from the `--device auto|cpu|cuda[:N]` option.

use tch::Device;

// Defined with the crate's other errors so that `crate::error` depends on no
// module that depends back on it; re-exported so the paths stay.
pub use crate::error::{DeviceUnavailable, ParseDeviceError};
use crate::system::SystemInfo;

/// A device request as written on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    /// CUDA device 0 when available, else the CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// A CUDA device by index.
    Cuda(usize),
}

impl std::str::FromStr for DeviceRequest {
    type Err = ParseDeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| ParseDeviceError(s.to_owned())),
        }
    }
}

impl DeviceRequest {
    /// Resolves the request against the devices libtorch can see.
    ///
    /// # Errors
    /// When a CUDA device is asked for that does not exist.
    pub fn resolve(self) -> Result<Device, DeviceUnavailable> {
        let available = if tch::Cuda::is_available() {
            tch::Cuda::device_count() as usize
        } else {
            0
        };
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto if available > 0 => Ok(Device::Cuda(0)),
            Self::Auto => Ok(Device::Cpu),
            Self::Cuda(i) if i < available => Ok(Device::Cuda(i)),
            Self::Cuda(requested) => Err(DeviceUnavailable {
                requested,
                available,
                // Only on this error path: probing loads the driver library.
                status: (available == 0).then(|| SystemInfo::probe().cuda_status()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::CudaStatus;
    use tch::{Kind, Tensor};

    #[test]
    fn parses_device_options() {
        assert_eq!("auto".parse(), Ok(DeviceRequest::Auto));
        assert_eq!("cpu".parse(), Ok(DeviceRequest::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceRequest::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceRequest::Cuda(3)));
        assert!("gpu".parse::<DeviceRequest>().is_err());
        assert_eq!(DeviceRequest::Cpu.resolve(), Ok(Device::Cpu));
        let huge = DeviceRequest::Cuda(1 << 20).resolve().unwrap_err();
        assert_eq!(huge.requested, 1 << 20);
        if huge.available == 0 {
            // No GPU here: the message names what is missing.
            let status = huge.status.clone().expect("a status without devices");
            assert!(!matches!(status, CudaStatus::Available(_)));
            assert!(huge.to_string().ends_with(&status.to_string()));
        }
    }

    /// The libtorch link works: a matrix product and an autograd step.
    #[test]
    fn libtorch_smoke() {
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).reshape([2, 2]);
        let b = Tensor::from_slice(&[5.0f32, 6.0, 7.0, 8.0]).reshape([2, 2]);
        let c = a.matmul(&b);
        assert_eq!(
            Vec::<f32>::try_from(c.flatten(0, 1)).unwrap(),
            [19.0, 22.0, 43.0, 50.0]
        );

        let x = Tensor::from_slice(&[3.0f64]).set_requires_grad(true);
        let y = (&x * &x * 2.0).sum(Kind::Double);
        y.backward();
        assert_eq!(f64::try_from(x.grad()).unwrap(), 12.0);
    }
}
