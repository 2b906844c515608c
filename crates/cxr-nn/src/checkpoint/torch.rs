//! PyTorch's own containers: the zip format of `torch.save` (since 1.6) and
//! the legacy format before it, both read through the non-executing
//! unpickler. Tensors are rebuilt from their storages (offset, size and
//! stride applied) and named by their path through nested dicts, lists and
//! dict-like objects, e.g. `state_dict.module.encoder_q.conv1.weight`.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::pickle::{Graph, Node, Value, unpickle};
use super::zip::ZipEntries;
use super::{CheckpointError, DType, RawTensor};

/// A tensor reference found in the graph, before its storage is read.
struct TensorRef {
    storage_key: String,
    dtype: DType,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

fn storage_dtype(name: &str) -> Option<DType> {
    Some(match name {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "LongStorage" => DType::I64,
        "IntStorage" => DType::I32,
        "ShortStorage" => DType::I16,
        "CharStorage" => DType::I8,
        "ByteStorage" => DType::U8,
        "BoolStorage" => DType::Bool,
        _ => return None,
    })
}

fn ints(g: &Graph, v: &Value) -> Option<Vec<usize>> {
    g.seq(v)?
        .iter()
        .map(|x| match x {
            Value::Int(i) => usize::try_from(*i).ok(),
            _ => None,
        })
        .collect()
}

fn global_name(v: &Value) -> Option<(&str, &str)> {
    match v {
        Value::Global(m, n) => Some((m.as_str(), n.as_str())),
        _ => None,
    }
}

/// Interprets `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`
/// and friends; `None` when `v` is not a tensor.
fn tensor_ref(g: &Graph, v: &Value) -> Option<TensorRef> {
    match g.node(v)? {
        Node::Object { class, args, .. } => tensor_from_call(g, class, args),
        _ => None,
    }
}

fn tensor_from_call(g: &Graph, class: &Value, args: &[Value]) -> Option<TensorRef> {
    match global_name(class)? {
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => {
            let Node::PersistentId(pid) = g.node(args.first()?)? else {
                return None;
            };
            // ('storage', StorageType, key, location, numel[, view metadata])
            let pid = g.seq(pid)?;
            let (_, storage_type) = global_name(pid.get(1)?)?;
            let Value::Str(key) = pid.get(2)? else {
                return None;
            };
            let Value::Int(offset) = args.get(1)? else {
                return None;
            };
            Some(TensorRef {
                storage_key: key.clone(),
                dtype: storage_dtype(storage_type)?,
                offset: usize::try_from(*offset).ok()?,
                shape: ints(g, args.get(2)?)?,
                stride: ints(g, args.get(3)?)?,
            })
        }
        // nn.Parameter wraps the tensor.
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            tensor_ref(g, args.first()?)
        }
        // Tensor subclasses: (rebuild function, subclass, its arguments, state).
        ("torch._tensor", "_rebuild_from_type_v2") => {
            tensor_from_call(g, args.first()?, g.seq(args.get(2)?)?)
        }
        _ => None,
    }
}

fn key_name(k: &Value) -> Option<String> {
    match k {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Walks the graph from `root`, collecting every tensor by its dotted path.
/// Tensors inside opaque objects' `BUILD` state are found too (optimizer
/// states, hyper-parameter containers); the registry decides what to use.
fn collect(g: &Graph, root: &Value) -> Vec<(String, TensorRef)> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut todo = vec![(String::new(), root.clone())];
    while let Some((path, v)) = todo.pop() {
        if let Some(t) = tensor_ref(g, &v) {
            out.push((path, t));
            continue;
        }
        let Value::Ref(i) = v else { continue };
        if !seen.insert(i) {
            continue;
        }
        let join = |k: &str| {
            if path.is_empty() {
                k.to_owned()
            } else {
                format!("{path}.{k}")
            }
        };
        let mut push_pairs = |pairs: &[(Value, Value)]| {
            for (k, v) in pairs.iter().rev() {
                if let Some(k) = key_name(k) {
                    todo.push((join(&k), v.clone()));
                }
            }
        };
        match &g.nodes[i] {
            Node::Dict(pairs) => push_pairs(pairs),
            Node::Object {
                items, state, list, ..
            } => {
                push_pairs(items);
                if let Some(state) = state {
                    todo.push((path.clone(), state.clone()));
                }
                for (n, v) in list.iter().enumerate().rev() {
                    todo.push((join(&n.to_string()), v.clone()));
                }
            }
            Node::Tuple(items) | Node::List(items) => {
                for (n, v) in items.iter().enumerate().rev() {
                    todo.push((join(&n.to_string()), v.clone()));
                }
            }
            Node::PersistentId(_) => {}
        }
    }
    out
}

/// Copies the viewed elements of `storage` into a contiguous buffer.
fn materialise(name: &str, t: &TensorRef, storage: &[u8]) -> Result<RawTensor, CheckpointError> {
    let size = t.dtype.size();
    let numel: usize = t.shape.iter().product();
    if t.shape.len() != t.stride.len() {
        return Err(CheckpointError::format(format!(
            "tensor '{name}': size and stride ranks differ"
        )));
    }
    // The furthest element the view touches must lie inside the storage.
    let last = t.offset
        + t.shape
            .iter()
            .zip(&t.stride)
            .map(|(&n, &s)| n.saturating_sub(1) * s)
            .sum::<usize>();
    if numel > 0 && (last + 1) * size > storage.len() {
        return Err(CheckpointError::format(format!(
            "tensor '{name}' reaches past the end of its storage '{}' (truncated file?)",
            t.storage_key
        )));
    }
    let mut data = Vec::with_capacity(numel * size);
    if numel == 0 {
        return Ok(RawTensor {
            dtype: t.dtype,
            shape: t.shape.clone(),
            data,
        });
    }
    // The trailing dimensions laid out contiguously (size-1 ones whatever
    // their stride) are copied as one block: a single copy for an ordinary
    // tensor, one per row of a strided view, instead of one per element
    // (a ResNet MoCo dict holds tens of millions of them).
    let (mut split, mut block) = (t.shape.len(), 1usize);
    while split > 0 && (t.shape[split - 1] == 1 || t.stride[split - 1] == block) {
        split -= 1;
        block *= t.shape[split];
    }
    let mut index = vec![0usize; split];
    for _ in 0..numel / block {
        let start = t.offset
            + index
                .iter()
                .zip(&t.stride)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        data.extend_from_slice(&storage[start * size..(start + block) * size]);
        for d in (0..split).rev() {
            index[d] += 1;
            if index[d] < t.shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(RawTensor {
        dtype: t.dtype,
        shape: t.shape.clone(),
        data,
    })
}

/// Reads a `torch.save` zip archive.
///
/// # Errors
/// On a malformed archive or pickle, or a tensor whose storage is missing.
pub fn read_zip(bytes: &[u8]) -> Result<BTreeMap<String, RawTensor>, CheckpointError> {
    let zip = ZipEntries::parse(bytes)?;
    let pkl_name = zip
        .find_suffix("/data.pkl")
        .ok_or_else(|| {
            CheckpointError::format("zip archive has no data.pkl: not a torch.save file".into())
        })?
        .to_owned();
    let prefix = &pkl_name[..pkl_name.len() - "data.pkl".len()];
    let (graph, root, _) = unpickle(zip.get(bytes, &pkl_name).expect("listed entry"))?;
    let mut tensors = BTreeMap::new();
    for (name, t) in collect(&graph, &root) {
        let entry = format!("{prefix}data/{}", t.storage_key);
        let storage = zip.get(bytes, &entry).ok_or_else(|| {
            CheckpointError::format(format!(
                "tensor '{name}': storage '{entry}' missing from the archive"
            ))
        })?;
        let raw = materialise(&name, &t, storage)?;
        tensors.insert(name, raw);
    }
    Ok(tensors)
}

/// The magic number 0x1950a86a20f9469cfc6c that starts the legacy (pre-1.6)
/// format, as the little-endian bytes of its `LONG1` pickle.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// Whether `bytes` start with the legacy format's magic-number pickle.
pub fn is_legacy(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x80)
        && unpickle(bytes).is_ok_and(|(_, v, _)| v == Value::Bytes(LEGACY_MAGIC.to_vec()))
}

/// Reads the legacy format: magic, protocol and system-info pickles, the
/// object pickle, the list of storage keys, then each storage as an 8-byte
/// element count followed by its raw little-endian data.
///
/// # Errors
/// On a malformed file.
pub fn read_legacy(bytes: &[u8]) -> Result<BTreeMap<String, RawTensor>, CheckpointError> {
    let mut at = 0;
    for _ in 0..3 {
        let (_, _, used) = unpickle(&bytes[at..])?;
        at += used;
    }
    let (graph, root, used) = unpickle(&bytes[at..])?;
    at += used;
    let (keys_graph, keys, used) = unpickle(&bytes[at..])?;
    at += used;
    let keys: Vec<String> = keys_graph
        .seq(&keys)
        .ok_or_else(|| {
            CheckpointError::format("legacy checkpoint: storage key list missing".into())
        })?
        .iter()
        .filter_map(key_name)
        .collect();
    let refs = collect(&graph, &root);
    let dtype_of: HashMap<&str, DType> = refs
        .iter()
        .map(|(_, t)| (t.storage_key.as_str(), t.dtype))
        .collect();
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    for key in &keys {
        let count = bytes
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .ok_or_else(|| {
                CheckpointError::format(format!(
                    "legacy checkpoint truncated before storage '{key}'"
                ))
            })?;
        at += 8;
        let size = dtype_of.get(key.as_str()).map_or(1, |d| d.size());
        let len = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(size))
            .ok_or_else(|| {
                CheckpointError::format(format!(
                    "legacy checkpoint: storage '{key}' has an impossible size"
                ))
            })?;
        let data = bytes.get(at..at + len).ok_or_else(|| {
            CheckpointError::format(format!(
                "legacy checkpoint truncated inside storage '{key}'"
            ))
        })?;
        at += len;
        storages.insert(key.clone(), data);
    }
    let mut tensors = BTreeMap::new();
    for (name, t) in refs {
        let storage = storages.get(&t.storage_key).ok_or_else(|| {
            CheckpointError::format(format!(
                "tensor '{name}': storage '{}' missing",
                t.storage_key
            ))
        })?;
        let raw = materialise(&name, &t, storage)?;
        tensors.insert(name, raw);
    }
    Ok(tensors)
}
