//! Reading released checkpoints without executing them, and writing the
//! project's safetensors.
//!
//! [`load`] recognises the container by its first bytes: a `torch.save` zip
//! archive (plain state dicts, Lightning `.ckpt`, MoCo dicts), the legacy
//! pre-1.6 torch pickle format, or safetensors. Every tensor is returned under
//! its dotted path (`state_dict.module.encoder_q.conv1.weight`); the model
//! registry maps those names onto an architecture.

use std::collections::BTreeMap;
use std::path::Path;

pub mod pickle;
pub mod torch;
pub mod zip;

#[cfg(test)]
mod hostile_tests;

// Defined with the crate's other errors so that `crate::error` depends on no
// module that depends back on it; re-exported so the path stays.
pub use crate::error::CheckpointError;

/// Element types found in checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// 64-bit integer.
    I64,
    /// 32-bit integer.
    I32,
    /// 16-bit integer.
    I16,
    /// 8-bit integer.
    I8,
    /// Unsigned byte.
    U8,
    /// Boolean (one byte).
    Bool,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }

    fn safetensors(self) -> safetensors::Dtype {
        use safetensors::Dtype as S;
        match self {
            Self::F32 => S::F32,
            Self::F64 => S::F64,
            Self::F16 => S::F16,
            Self::BF16 => S::BF16,
            Self::I64 => S::I64,
            Self::I32 => S::I32,
            Self::I16 => S::I16,
            Self::I8 => S::I8,
            Self::U8 => S::U8,
            Self::Bool => S::BOOL,
        }
    }

    fn from_safetensors(d: safetensors::Dtype) -> Option<Self> {
        use safetensors::Dtype as S;
        Some(match d {
            S::F32 => Self::F32,
            S::F64 => Self::F64,
            S::F16 => Self::F16,
            S::BF16 => Self::BF16,
            S::I64 => Self::I64,
            S::I32 => Self::I32,
            S::I16 => Self::I16,
            S::I8 => Self::I8,
            S::U8 => Self::U8,
            S::BOOL => Self::Bool,
            _ => return None,
        })
    }

    /// The matching tch kind.
    pub fn kind(self) -> tch::Kind {
        use tch::Kind as K;
        match self {
            Self::F32 => K::Float,
            Self::F64 => K::Double,
            Self::F16 => K::Half,
            Self::BF16 => K::BFloat16,
            Self::I64 => K::Int64,
            Self::I32 => K::Int,
            Self::I16 => K::Int16,
            Self::I8 => K::Int8,
            Self::U8 => K::Uint8,
            Self::Bool => K::Bool,
        }
    }
}

/// One tensor, contiguous, little-endian.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    /// Element type.
    pub dtype: DType,
    /// Shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// Row-major element bytes.
    pub data: Vec<u8>,
}

impl RawTensor {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The tensor on the CPU as a tch tensor (copied).
    pub fn to_tch(&self) -> tch::Tensor {
        let shape: Vec<i64> = self.shape.iter().map(|&d| d as i64).collect();
        tch::Tensor::f_from_data_size(&self.data, &shape, self.dtype.kind())
            .expect("byte length matches shape and dtype by construction")
    }

    /// Copies a tch tensor (any device, any layout) into a raw tensor.
    ///
    /// # Errors
    /// [`CheckpointError::UnsupportedDType`] for kinds without a
    /// safetensors counterpart (complex, quantised).
    pub fn from_tch(name: &str, t: &tch::Tensor) -> Result<Self, CheckpointError> {
        use tch::Kind as K;
        let dtype = match t.kind() {
            K::Float => DType::F32,
            K::Double => DType::F64,
            K::Half => DType::F16,
            K::BFloat16 => DType::BF16,
            K::Int64 => DType::I64,
            K::Int => DType::I32,
            K::Int16 => DType::I16,
            K::Int8 => DType::I8,
            K::Uint8 => DType::U8,
            K::Bool => DType::Bool,
            other => {
                return Err(CheckpointError::UnsupportedDType {
                    name: name.to_owned(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        let t = t.to_device(tch::Device::Cpu).contiguous();
        let numel = t.numel();
        let mut data = vec![0u8; numel * dtype.size()];
        t.copy_data_u8(&mut data, numel);
        Ok(Self {
            dtype,
            shape: t.size().iter().map(|&d| d as usize).collect(),
            data,
        })
    }

    /// Values widened to f64 (for tests and summaries).
    pub fn to_f64(&self) -> Vec<f64> {
        let b = &self.data;
        let n = self.numel();
        let at = |i: usize, w: usize| &b[i * w..(i + 1) * w];
        (0..n)
            .map(|i| match self.dtype {
                DType::F32 => f64::from(f32::from_le_bytes(at(i, 4).try_into().expect("4"))),
                DType::F64 => f64::from_le_bytes(at(i, 8).try_into().expect("8")),
                DType::F16 => f64::from(half_to_f32(u16::from_le_bytes(
                    at(i, 2).try_into().expect("2"),
                ))),
                DType::BF16 => f64::from(f32::from_bits(
                    u32::from(u16::from_le_bytes(at(i, 2).try_into().expect("2"))) << 16,
                )),
                DType::I64 => i64::from_le_bytes(at(i, 8).try_into().expect("8")) as f64,
                DType::I32 => f64::from(i32::from_le_bytes(at(i, 4).try_into().expect("4"))),
                DType::I16 => f64::from(i16::from_le_bytes(at(i, 2).try_into().expect("2"))),
                DType::I8 => f64::from(b[i] as i8),
                DType::U8 | DType::Bool => f64::from(b[i]),
            })
            .collect()
    }
}

fn half_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: value = frac * 2^-24.
            let v = frac as f32 * 2f32.powi(-24);
            return if sign != 0 { -v } else { v };
        }
        (31, _) => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 112) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

/// The container a checkpoint came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// `torch.save` zip archive (PyTorch >= 1.6, Lightning `.ckpt`).
    TorchZip,
    /// The legacy torch pickle format.
    TorchLegacy,
    /// safetensors.
    Safetensors,
}

/// Every tensor of a checkpoint, by dotted path.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The container format.
    pub container: Container,
    /// Tensors by name, sorted.
    pub tensors: BTreeMap<String, RawTensor>,
}

/// Reads a checkpoint from bytes, detecting its container.
///
/// # Errors
/// [`CheckpointError::Format`] when the bytes are none of the supported
/// containers, or are truncated or malformed.
pub fn parse(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return Ok(Checkpoint {
            container: Container::TorchZip,
            tensors: torch::read_zip(bytes)?,
        });
    }
    if torch::is_legacy(bytes) {
        return Ok(Checkpoint {
            container: Container::TorchLegacy,
            tensors: torch::read_legacy(bytes)?,
        });
    }
    if bytes.len() >= 9 && bytes[8] == b'{' {
        return Ok(Checkpoint {
            container: Container::Safetensors,
            tensors: read_safetensors(bytes)?,
        });
    }
    Err(CheckpointError::format(
        "not a PyTorch checkpoint (zip or legacy pickle) nor a safetensors file".into(),
    ))
}

/// Reads a checkpoint file.
///
/// # Errors
/// As [`parse`], prefixed with the path; or when the file cannot be read.
pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse(&bytes).map_err(|e| match e {
        CheckpointError::Format { reason, .. } => CheckpointError::Format {
            file: Some(path.display().to_string()),
            reason,
        },
        other => other,
    })
}

fn read_safetensors(bytes: &[u8]) -> Result<BTreeMap<String, RawTensor>, CheckpointError> {
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| CheckpointError::format(format!("invalid safetensors: {e}")))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let dtype = DType::from_safetensors(view.dtype()).ok_or_else(|| {
            CheckpointError::UnsupportedDType {
                name: name.clone(),
                dtype: format!("{:?}", view.dtype()),
            }
        })?;
        out.insert(
            name,
            RawTensor {
                dtype,
                shape: view.shape().to_vec(),
                data: view.data().to_vec(),
            },
        );
    }
    Ok(out)
}

/// Serialises tensors as safetensors, with optional string metadata.
///
/// # Errors
/// When safetensors rejects the data (inconsistent shapes).
pub fn to_safetensors(
    tensors: &BTreeMap<String, RawTensor>,
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<Vec<u8>, CheckpointError> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(k, t)| {
            safetensors::tensor::TensorView::new(t.dtype.safetensors(), t.shape.clone(), &t.data)
                .map(|v| (k.clone(), v))
                .map_err(|e| CheckpointError::format(format!("tensor '{k}': {e}")))
        })
        .collect::<Result<_, _>>()?;
    let bytes = safetensors::tensor::serialize(views, None)
        .map_err(|e| CheckpointError::format(format!("cannot serialise safetensors: {e}")))?;
    Ok(match metadata {
        Some(m) if !m.is_empty() => with_sorted_metadata(&bytes, &m),
        _ => bytes,
    })
}

/// Inserts `__metadata__` into a serialised file's header with its keys
/// sorted: safetensors writes a `HashMap` in hash order, so the same tensors
/// and metadata would give different bytes from run to run. Tensor offsets
/// are relative to the data section, so growing the header moves nothing.
fn with_sorted_metadata(
    bytes: &[u8],
    metadata: &std::collections::HashMap<String, String>,
) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8-byte length prefix")) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n])
        .expect("safetensors writes UTF-8 JSON")
        .trim_end();
    let sorted: BTreeMap<&String, &String> = metadata.iter().collect();
    let meta = serde_json::to_string(&sorted).expect("strings serialise");
    let rest = &header[1..];
    let sep = if rest.trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    let mut new_header = format!("{{\"__metadata__\":{meta}{sep}{rest}");
    while new_header.len() % 8 != 0 {
        new_header.push(' ');
    }
    let mut out = Vec::with_capacity(bytes.len() + meta.len() + 24);
    out.extend_from_slice(&(new_header.len() as u64).to_le_bytes());
    out.extend_from_slice(new_header.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_written_in_a_fixed_order_and_reads_back() {
        let tensors = BTreeMap::from([(
            "w".to_owned(),
            RawTensor {
                dtype: DType::F32,
                shape: vec![2],
                data: vec![0, 0, 128, 63, 0, 0, 0, 64],
            },
        )]);
        let meta = || -> std::collections::HashMap<String, String> {
            (0..8)
                .map(|i| (format!("key{i}"), format!("value {i}")))
                .collect()
        };
        let first = to_safetensors(&tensors, Some(meta())).unwrap();
        for _ in 0..5 {
            assert_eq!(to_safetensors(&tensors, Some(meta())).unwrap(), first);
        }
        let (_, header) = safetensors::SafeTensors::read_metadata(&first).unwrap();
        assert_eq!(header.metadata().as_ref().unwrap()["key3"], "value 3");
        let back = parse(&first).unwrap();
        assert_eq!(back.tensors, tensors);
    }
}
