//! What this process's libtorch can do on this machine: its version, whether
//! its CUDA support is loaded, the CUDA and cuDNN versions it was built with,
//! the NVIDIA driver, and the devices. `cxrlearn info --system` prints it, and
//! a `--device cuda` that cannot be honoured names the first missing piece
//! ([`CudaStatus`]).
//!
//! The loaded libraries are read from `/proc/self/maps`, so "loaded" means
//! mapped into this very process, not merely listed in a binary; that is the
//! property the build scripts' `--no-as-needed -ltorch_cuda` must guarantee
//! (see `crates/cxr-nn/rpath.rs`).

#![allow(unsafe_code)] // The shim's two calls (which catch every C++ exception) and cudarc's driver calls.

use std::ffi::{CStr, c_char, c_long};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

unsafe extern "C" {
    fn cxr_torch_version() -> *const c_char;
    fn cxr_cuda_build(cudart: *mut c_long, cudnn: *mut c_long) -> i32;
}

/// One CUDA device as the driver describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuInfo {
    /// CUDA index (`cuda:N`).
    pub index: usize,
    /// The device name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: Option<String>,
    /// Total device memory in bytes.
    pub memory_bytes: Option<u64>,
}

/// The state of the NVIDIA driver, as far as this process can tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Driver {
    /// Not looked for: libtorch has no CUDA support, so it could not be used.
    NotChecked,
    /// `libcuda.so` cannot be loaded.
    Missing,
    /// The library loads but `cuInit` fails (the message is the driver's).
    Failed {
        /// The driver's error.
        error: String,
    },
    /// The driver works.
    Ok {
        /// The CUDA version the driver supports, e.g. "13.0".
        version: String,
    },
}

/// Everything `cxrlearn info --system` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SystemInfo {
    /// libtorch's version (of the headers cxrlearn was built against; the
    /// loaded library comes from the same directory through the rpath).
    pub libtorch_version: String,
    /// The directory the loaded `libtorch_cpu.so` was mapped from.
    pub libtorch_dir: Option<PathBuf>,
    /// `libtorch_cuda.so` exists in that directory (a CUDA build of libtorch).
    pub cuda_library_present: bool,
    /// `libtorch_cuda.so` is mapped into this process.
    pub cuda_library_loaded: bool,
    /// libtorch's CUDA backend is registered (what `cuda_library_loaded` is for).
    pub cuda_support: bool,
    /// The CUDA runtime version libtorch was compiled against, e.g. "13.0".
    pub cuda_version: Option<String>,
    /// The cuDNN version libtorch was compiled against, e.g. "9.13.0".
    pub cudnn_version: Option<String>,
    /// The NVIDIA driver.
    pub driver: Driver,
    /// The CUDA devices libtorch sees.
    pub devices: Vec<GpuInfo>,
}

/// Why CUDA can or cannot be used, in the order a user has to fix things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CudaStatus {
    /// libtorch is a CPU-only build.
    NoCudaBuild {
        /// Where the loaded libtorch lives.
        libtorch_dir: Option<PathBuf>,
    },
    /// libtorch has CUDA support on disk but this binary did not load it.
    NotLoaded {
        /// Where `libtorch_cuda.so` lies.
        libtorch_dir: PathBuf,
    },
    /// A CUDA build, but no NVIDIA driver.
    NoDriver {
        /// libtorch's CUDA version.
        cuda_version: Option<String>,
    },
    /// The driver library loads but does not initialise.
    DriverFailed {
        /// The driver's error.
        error: String,
    },
    /// Driver fine, but no device.
    NoDevice {
        /// The driver's CUDA version.
        driver_version: String,
    },
    /// Usable, with this many devices.
    Available(usize),
}

impl fmt::Display for CudaStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = |d: &Option<PathBuf>| {
            d.as_ref()
                .map_or_else(String::new, |d| format!(" ({})", d.display()))
        };
        match self {
            Self::NoCudaBuild { libtorch_dir } => write!(
                f,
                "this libtorch{} is a CPU-only build (no libtorch_cuda.so); build cxrlearn \
                 against a CUDA build of libtorch",
                dir(libtorch_dir)
            ),
            Self::NotLoaded { libtorch_dir } => write!(
                f,
                "libtorch's CUDA support ({}/libtorch_cuda.so) exists but this binary did not \
                 load it (it was linked without it); rebuild cxrlearn",
                libtorch_dir.display()
            ),
            Self::NoDriver { cuda_version } => write!(
                f,
                "libtorch has CUDA{} support but no NVIDIA driver was found (libcuda.so cannot \
                 be loaded)",
                cuda_version
                    .as_ref()
                    .map_or_else(String::new, |v| format!(" {v}"))
            ),
            Self::DriverFailed { error } => {
                write!(f, "the NVIDIA driver did not initialise: {error}")
            }
            Self::NoDevice { driver_version } => write!(
                f,
                "the NVIDIA driver (CUDA {driver_version}) works but sees no CUDA device"
            ),
            Self::Available(n) => write!(f, "{n} CUDA device(s) available"),
        }
    }
}

/// `13000` -> "13.0", `12080` -> "12.8" (CUDART_VERSION and the driver's
/// version share this encoding).
fn cuda_version_string(v: i64) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// CUDNN_VERSION: `major*10000 + minor*100 + patch` from cuDNN 9 on,
/// `major*1000 + minor*100 + patch` before.
fn cudnn_version_string(v: i64) -> String {
    let (major, rest) = if v >= 90000 {
        (v / 10000, v % 10000)
    } else {
        (v / 1000, v % 1000)
    };
    format!("{major}.{}.{}", rest / 100, rest % 100)
}

/// Paths of the files mapped into this process (from `/proc/self/maps`),
/// each once.
fn mapped_files() -> Vec<PathBuf> {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = Vec::new();
    for line in maps.lines() {
        let Some(at) = line.find(" /") else { continue };
        let path = Path::new(line[at + 1..].trim_end());
        if !out.iter().any(|p| p == path) {
            out.push(path.to_owned());
        }
    }
    out
}

/// Those of `files` whose name is `stem` followed by `.so` (`libtorch_cuda`
/// matches `libtorch_cuda.so`, not `libtorch_cuda_linalg.so`).
fn named<'a>(files: &'a [PathBuf], stem: &'a str) -> impl Iterator<Item = &'a PathBuf> {
    files.iter().filter(move |path| {
        path.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(stem))
            .is_some_and(|rest| rest == ".so" || rest.starts_with(".so."))
    })
}

/// Paths of the shared objects mapped into this process whose file name
/// starts with `stem` followed by `.so`.
pub fn loaded_libraries(stem: &str) -> Vec<PathBuf> {
    named(&mapped_files(), stem).cloned().collect()
}

fn libtorch_version() -> String {
    // SAFETY: returns a pointer to a static NUL-terminated string literal.
    unsafe { CStr::from_ptr(cxr_torch_version()) }
        .to_string_lossy()
        .into_owned()
}

/// (CUDA runtime, cuDNN) versions libtorch was built with; `None` without
/// CUDA support.
fn cuda_build() -> Option<(String, Option<String>)> {
    let (mut cudart, mut cudnn): (c_long, c_long) = (0, -1);
    // SAFETY: the shim writes two longs through valid pointers and catches
    // every C++ exception.
    let rc = unsafe { cxr_cuda_build(&raw mut cudart, &raw mut cudnn) };
    (rc == 1).then(|| {
        (
            cuda_version_string(cudart),
            (cudnn >= 0).then(|| cudnn_version_string(cudnn)),
        )
    })
}

fn driver_error(e: &cudarc::driver::DriverError) -> String {
    e.error_string()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("{e:?}"))
}

/// The driver's state and, when it works, every device's name and memory.
fn probe_driver() -> (Driver, Vec<GpuInfo>) {
    use cudarc::driver::{result, sys};
    // SAFETY: only tries to open the library.
    if !unsafe { sys::is_culib_present() } {
        return (Driver::Missing, Vec::new());
    }
    if let Err(e) = result::init() {
        return (
            Driver::Failed {
                error: driver_error(&e),
            },
            Vec::new(),
        );
    }
    let mut version = 0i32;
    // SAFETY: writes one int; the library is loaded and initialised.
    let rc = unsafe { sys::cuDriverGetVersion(&raw mut version) };
    let version = if rc == sys::CUresult::CUDA_SUCCESS {
        cuda_version_string(i64::from(version))
    } else {
        "unknown".to_owned()
    };
    let count = result::device::get_count().unwrap_or(0).max(0);
    let devices = (0..count)
        .map(|i| {
            let dev = result::device::get(i).ok();
            GpuInfo {
                index: i as usize,
                name: dev.and_then(|d| result::device::get_name(d).ok()),
                // SAFETY: `d` is a device handle the driver just returned.
                memory_bytes: dev
                    .and_then(|d| unsafe { result::device::total_mem(d) }.ok())
                    .map(|m| m as u64),
            }
        })
        .collect();
    (Driver::Ok { version }, devices)
}

impl SystemInfo {
    /// Looks at this process and machine. Touches the driver only when
    /// libtorch has CUDA support (so a CPU build never loads `libcuda`).
    pub fn probe() -> Self {
        let mapped = mapped_files();
        let libtorch_dir = named(&mapped, "libtorch_cpu")
            .next()
            .and_then(|p| p.parent())
            .map(Path::to_owned);
        let cuda_library_present = libtorch_dir
            .as_ref()
            .is_some_and(|d| d.join("libtorch_cuda.so").exists());
        let cuda_library_loaded = named(&mapped, "libtorch_cuda").next().is_some();
        let build = cuda_build();
        let (driver, driver_devices) = if build.is_some() {
            probe_driver()
        } else {
            (Driver::NotChecked, Vec::new())
        };
        let torch_count = if build.is_some() && matches!(driver, Driver::Ok { .. }) {
            usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
        } else {
            0
        };
        // libtorch's count is the one `--device` resolves against
        // (CUDA_VISIBLE_DEVICES applies to both, so indices agree).
        let devices = (0..torch_count)
            .map(|i| {
                driver_devices
                    .iter()
                    .find(|d| d.index == i)
                    .cloned()
                    .unwrap_or(GpuInfo {
                        index: i,
                        name: None,
                        memory_bytes: None,
                    })
            })
            .collect();
        let (cuda_version, cudnn_version) = match build {
            Some((cuda, cudnn)) => (Some(cuda), cudnn),
            None => (None, None),
        };
        Self {
            libtorch_version: libtorch_version(),
            libtorch_dir,
            cuda_library_present,
            cuda_library_loaded,
            cuda_support: cuda_version.is_some(),
            cuda_version,
            cudnn_version,
            driver,
            devices,
        }
    }

    /// Whether CUDA can be used and, if not, the first thing missing.
    pub fn cuda_status(&self) -> CudaStatus {
        if !self.cuda_support {
            return match (&self.libtorch_dir, self.cuda_library_present) {
                (Some(dir), true) => CudaStatus::NotLoaded {
                    libtorch_dir: dir.clone(),
                },
                _ => CudaStatus::NoCudaBuild {
                    libtorch_dir: self.libtorch_dir.clone(),
                },
            };
        }
        match &self.driver {
            Driver::NotChecked | Driver::Missing => CudaStatus::NoDriver {
                cuda_version: self.cuda_version.clone(),
            },
            Driver::Failed { error } => CudaStatus::DriverFailed {
                error: error.clone(),
            },
            Driver::Ok { version } if self.devices.is_empty() => CudaStatus::NoDevice {
                driver_version: version.clone(),
            },
            Driver::Ok { .. } => CudaStatus::Available(self.devices.len()),
        }
    }

    /// The human-readable summary `cxrlearn info --system` prints.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
        let mut s = String::new();
        let _ = writeln!(s, "libtorch        {}", self.libtorch_version);
        let _ = writeln!(
            s,
            "libtorch dir    {}",
            self.libtorch_dir.as_ref().map_or_else(
                || "(not found in this process)".to_owned(),
                |d| d.display().to_string()
            )
        );
        let _ = writeln!(
            s,
            "CUDA library    {} (libtorch_cuda.so {})",
            if self.cuda_library_present {
                "present"
            } else {
                "absent: CPU-only build"
            },
            if self.cuda_library_loaded {
                "loaded"
            } else {
                "not loaded"
            }
        );
        let _ = writeln!(s, "CUDA support    {}", yes_no(self.cuda_support));
        let _ = writeln!(s, "CUDA (built)    {}", or_none(&self.cuda_version));
        let _ = writeln!(s, "cuDNN (built)   {}", or_none(&self.cudnn_version));
        let driver = match &self.driver {
            Driver::NotChecked => "not checked (no CUDA support)".to_owned(),
            Driver::Missing => "not found (libcuda.so cannot be loaded)".to_owned(),
            Driver::Failed { error } => format!("failed to initialise: {error}"),
            Driver::Ok { version } => format!("CUDA {version}"),
        };
        let _ = writeln!(s, "driver          {driver}");
        let _ = writeln!(s, "devices         {}", self.devices.len());
        for d in &self.devices {
            let memory = d.memory_bytes.map_or_else(String::new, |m| {
                format!(", {:.1} GiB", m as f64 / f64::from(1u32 << 30))
            });
            let _ = writeln!(
                s,
                "  cuda:{}  {}{memory}",
                d.index,
                d.name.as_deref().unwrap_or("(name unknown)")
            );
        }
        let _ = writeln!(s, "cuda status     {}", self.cuda_status());
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_encodings() {
        assert_eq!(cuda_version_string(13000), "13.0");
        assert_eq!(cuda_version_string(12080), "12.8");
        assert_eq!(cuda_version_string(11080), "11.8");
        assert_eq!(cudnn_version_string(91300), "9.13.0");
        assert_eq!(cudnn_version_string(90100), "9.1.0");
        assert_eq!(cudnn_version_string(8907), "8.9.7");
    }

    /// The check the build scripts exist for: a CUDA build of libtorch must
    /// be loaded, and then its CUDA backend registered. Fails on a binary
    /// linked without `--no-as-needed -ltorch_cuda`.
    #[test]
    fn cuda_support_is_loaded_whenever_libtorch_has_it() {
        let s = SystemInfo::probe();
        let dir = s.libtorch_dir.clone().expect("libtorch_cpu.so is mapped");
        assert!(dir.join("libtorch_cpu.so").exists(), "{}", dir.display());
        assert_eq!(
            s.cuda_library_loaded,
            s.cuda_library_present,
            "libtorch_cuda.so in {} but loaded: {}",
            dir.display(),
            s.cuda_library_loaded
        );
        assert_eq!(s.cuda_support, s.cuda_library_present);
        assert_eq!(s.cuda_version.is_some(), s.cuda_support);
        assert!(
            s.libtorch_version.starts_with("2."),
            "{}",
            s.libtorch_version
        );
        // The device list is libtorch's own count.
        let torch = if tch::Cuda::is_available() {
            tch::Cuda::device_count() as usize
        } else {
            0
        };
        assert_eq!(s.devices.len(), torch);
        match s.cuda_status() {
            CudaStatus::Available(n) => assert_eq!(n, torch),
            CudaStatus::NotLoaded { .. } => panic!("libtorch_cuda.so present but not loaded"),
            other => assert_eq!(torch, 0, "{other}"),
        }
    }

    #[test]
    fn loaded_library_names_match_exactly() {
        let cpu = loaded_libraries("libtorch_cpu");
        assert_eq!(cpu.len(), 1, "{cpu:?}");
        assert!(loaded_libraries("libtorch_cp").is_empty());
        assert!(loaded_libraries("libnot_a_library_cxr").is_empty());
    }

    #[test]
    fn status_messages_name_what_is_missing() {
        let dir = PathBuf::from("/opt/libtorch/lib");
        let no_build = CudaStatus::NoCudaBuild {
            libtorch_dir: Some(dir.clone()),
        }
        .to_string();
        assert!(no_build.contains("CPU-only build") && no_build.contains("/opt/libtorch/lib"));
        let not_loaded = CudaStatus::NotLoaded {
            libtorch_dir: dir.clone(),
        }
        .to_string();
        assert!(not_loaded.contains("/opt/libtorch/lib/libtorch_cuda.so"));
        assert!(not_loaded.contains("did not load"));
        let no_driver = CudaStatus::NoDriver {
            cuda_version: Some("13.0".into()),
        }
        .to_string();
        assert!(no_driver.contains("CUDA 13.0") && no_driver.contains("no NVIDIA driver"));
        let no_device = CudaStatus::NoDevice {
            driver_version: "13.0".into(),
        }
        .to_string();
        assert!(no_device.contains("sees no CUDA device"));
        // The status follows the first missing piece.
        let mut s = SystemInfo {
            libtorch_version: "2.13.0".into(),
            libtorch_dir: Some(dir.clone()),
            cuda_library_present: true,
            cuda_library_loaded: false,
            cuda_support: false,
            cuda_version: None,
            cudnn_version: None,
            driver: Driver::NotChecked,
            devices: vec![],
        };
        assert!(matches!(s.cuda_status(), CudaStatus::NotLoaded { .. }));
        s.cuda_library_present = false;
        assert!(matches!(s.cuda_status(), CudaStatus::NoCudaBuild { .. }));
        s.cuda_library_present = true;
        s.cuda_library_loaded = true;
        s.cuda_support = true;
        s.cuda_version = Some("13.0".into());
        s.driver = Driver::Missing;
        assert!(matches!(s.cuda_status(), CudaStatus::NoDriver { .. }));
        s.driver = Driver::Ok {
            version: "13.0".into(),
        };
        assert!(matches!(s.cuda_status(), CudaStatus::NoDevice { .. }));
        s.devices.push(GpuInfo {
            index: 0,
            name: Some("GPU".into()),
            memory_bytes: Some(1 << 30),
        });
        assert_eq!(s.cuda_status(), CudaStatus::Available(1));
        assert!(s.render().contains("cuda:0  GPU, 1.0 GiB"));
    }
}
