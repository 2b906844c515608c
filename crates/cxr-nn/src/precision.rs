//! Mixed precision: the `--precision fp32|bf16|fp16` option and libtorch's
//! autocast regions.
//!
//! Inside an autocast region libtorch runs matrix products and convolutions
//! in the reduced type and keeps reductions, norms and losses in float32;
//! weights stay float32. tch switches only CUDA autocast at float16, so the
//! region is entered through a small C++ shim (`csrc/autocast.cpp`) that
//! also sets bfloat16 and works on the CPU.
#![allow(unsafe_code)] // Two calls into the shim, which catches every C++ exception.

use std::ffi::c_int;
use std::fmt;

use tch::{Device, Kind};

use crate::error::NnError;

unsafe extern "C" {
    fn cxr_autocast_enter(
        device: c_int,
        bf16: c_int,
        prev_enabled: *mut c_int,
        prev_bf16: *mut c_int,
    ) -> c_int;
    fn cxr_autocast_exit(device: c_int, prev_enabled: c_int, prev_bf16: c_int) -> c_int;
}

/// Arithmetic precision of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Float32 everywhere.
    #[default]
    Fp32,
    /// Autocast to bfloat16 (CPU and GPU; no loss scaling needed).
    Bf16,
    /// Autocast to float16 (GPU only), with dynamic loss scaling when
    /// training.
    Fp16,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fp32 => "fp32",
            Self::Bf16 => "bf16",
            Self::Fp16 => "fp16",
        })
    }
}

impl std::str::FromStr for Precision {
    type Err = NnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fp32" | "float32" => Ok(Self::Fp32),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            "fp16" | "float16" | "half" => Ok(Self::Fp16),
            _ => Err(NnError::UnknownPrecision {
                value: s.to_owned(),
            }),
        }
    }
}

impl Precision {
    /// The reduced type, `None` at fp32.
    pub fn kind(self) -> Option<Kind> {
        match self {
            Self::Fp32 => None,
            Self::Bf16 => Some(Kind::BFloat16),
            Self::Fp16 => Some(Kind::Half),
        }
    }

    /// Whether training at this precision needs loss scaling (float16's
    /// narrow exponent range underflows small gradients).
    pub fn needs_loss_scaling(self) -> bool {
        self == Self::Fp16
    }

    /// Whether this precision can run on `device`.
    ///
    /// # Errors
    /// [`NnError::Fp16OnCpu`], whose message names the alternative.
    pub fn check(self, device: Device) -> Result<(), NnError> {
        if self == Self::Fp16 && device == Device::Cpu {
            return Err(NnError::Fp16OnCpu);
        }
        Ok(())
    }

    /// Runs `f` inside an autocast region on `device` at this precision
    /// (`f` as is at fp32). The previous autocast state is restored
    /// afterwards, also when `f` panics.
    ///
    /// # Panics
    /// When libtorch refuses the autocast state (a libtorch without
    /// autocast support for the device).
    pub fn autocast<T>(self, device: Device, f: impl FnOnce() -> T) -> T {
        let Some(kind) = self.kind() else {
            return f();
        };
        let _region = Region::enter(device, kind == Kind::BFloat16);
        f()
    }
}

/// An entered autocast region; leaving it restores the previous state.
struct Region {
    device: c_int,
    prev_enabled: c_int,
    prev_bf16: c_int,
}

impl Region {
    fn enter(device: Device, bf16: bool) -> Self {
        let device = c_int::from(device != Device::Cpu);
        let (mut prev_enabled, mut prev_bf16) = (0, 0);
        // SAFETY: the shim writes two ints through valid pointers and
        // reports C++ exceptions as a non-zero return.
        let rc = unsafe {
            cxr_autocast_enter(device, c_int::from(bf16), &mut prev_enabled, &mut prev_bf16)
        };
        assert_eq!(rc, 0, "libtorch refused to enter an autocast region");
        Self {
            device,
            prev_enabled,
            prev_bf16,
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: plain ints; exceptions are caught in the shim.
        let _ = unsafe { cxr_autocast_exit(self.device, self.prev_enabled, self.prev_bf16) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Tensor;

    #[test]
    fn parses_and_prints() {
        for p in [Precision::Fp32, Precision::Bf16, Precision::Fp16] {
            assert_eq!(p.to_string().parse::<Precision>().unwrap(), p);
        }
        assert!(
            "fp8"
                .parse::<Precision>()
                .unwrap_err()
                .to_string()
                .contains("fp32, bf16 or fp16")
        );
        assert!(
            Precision::Fp16
                .check(Device::Cpu)
                .unwrap_err()
                .to_string()
                .contains("use bf16")
        );
        assert!(Precision::Bf16.check(Device::Cpu).is_ok());
    }

    /// On the CPU a bf16 region computes matrix products in bfloat16 (the
    /// result is bfloat16 and differs from float32 by bfloat16's rounding),
    /// and leaving it restores float32 arithmetic.
    #[test]
    fn bf16_region_on_the_cpu() {
        let a = Tensor::randn([16, 64], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([64, 8], (Kind::Float, Device::Cpu));
        let exact = a.matmul(&b);
        let inside = Precision::Bf16.autocast(Device::Cpu, || a.mm(&b));
        assert_eq!(inside.kind(), Kind::BFloat16);
        let err = (inside.to_kind(Kind::Float) - &exact)
            .abs()
            .max()
            .double_value(&[]);
        let scale = exact.abs().max().double_value(&[]);
        assert!(
            err > 0.0 && err < 0.05 * scale,
            "bf16 error {err} of {scale}"
        );
        assert_eq!(
            a.mm(&b).kind(),
            Kind::Float,
            "autocast leaked out of its region"
        );
        // Nested regions restore the outer one.
        Precision::Bf16.autocast(Device::Cpu, || {
            Precision::Fp32.autocast(Device::Cpu, || ());
            assert_eq!(a.mm(&b).kind(), Kind::BFloat16);
        });
        assert_eq!(
            Precision::Fp32.autocast(Device::Cpu, || a.mm(&b)).kind(),
            Kind::Float
        );
    }
}
