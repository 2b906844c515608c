//! PyTorch's own containers: the zip format of `torch.save` (since 1.6) and
//! the legacy format before it, both read through the non-executing
//! unpickler. Tensors are rebuilt from their storages (offset, size and
//! stride applied) and named by their path through nested dicts, lists and
//! dict-like objects, e.g. `state_dict.module.encoder_q.conv1.weight`.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::pickle::{Graph, MAX_NESTING, Node, Value, unpickle};
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

/// How many rebuild calls may wrap one tensor: `nn.Parameter` around a
/// tensor subclass around `_rebuild_tensor_v2` is three. The bound keeps a
/// chain of wrappers (or one that contains itself through a list) from
/// recursing without end.
const MAX_TENSOR_WRAPPING: usize = 16;

/// How deep the walk from the root to a tensor may go. A state dict nests
/// two to five levels (Lightning's `state_dict`, MoCo's `module.encoder_q`);
/// Python's pickler could not have written a tree deeper than its recursion
/// limit (1000 by default), and [`MAX_NESTING`] allows ten times that.
const MAX_DEPTH: usize = MAX_NESTING;

/// The longest tensor name accepted, in bytes. Real names are under 200
/// (`state_dict.module.encoder_q.layer4.2.bn3.running_mean`); the bound keeps
/// a name built from long keys nested deeply from costing gigabytes.
pub const MAX_NAME_LEN: usize = 4096;

/// How many tensors one checkpoint may hold. The models here have a few
/// hundred to a few thousand (twice that with an optimizer state); the
/// bound, with [`MAX_NAME_LEN`], keeps the names within a few hundred MB.
pub const MAX_TENSORS: usize = 1 << 16;

/// How many bytes the tensors may take, as a multiple of the file's size.
/// A view's elements must lie inside its storage, but views may overlap
/// (stride 0, or rows that share elements) and many tensors may view one
/// storage, so a few bytes of pickle could otherwise ask for terabytes.
/// Real checkpoints read out about once (twice with tied weights); the
/// compact fixtures of `scripts/fixtures/moco_resnet18.py`, whose weights
/// all overlap in one 256 KiB storage, about 180 times.
pub const MAX_EXPANSION: usize = 256;

/// The dimensions (`what`: size or stride) of a tensor, each a
/// non-negative 64-bit integer.
fn dims(g: &Graph, v: &Value, what: &str) -> Result<Vec<usize>, String> {
    let items = g
        .seq(v)
        .ok_or_else(|| format!("its {what} is not a tuple"))?;
    let shown = || {
        let all: Vec<String> = items
            .iter()
            .take(8)
            .map(|x| match x {
                Value::Int(i) => i.to_string(),
                _ => "?".into(),
            })
            .collect();
        all.join(", ")
    };
    items
        .iter()
        .map(|x| match x {
            Value::Int(i) => {
                usize::try_from(*i).map_err(|_| format!("negative {what} {i} in ({})", shown()))
            }
            _ => Err(format!(
                "a {what} entry is not a 64-bit integer in ({})",
                shown()
            )),
        })
        .collect()
}

fn global_name(v: &Value) -> Option<(&str, &str)> {
    match v {
        Value::Global(m, n) => Some((m, n)),
        _ => None,
    }
}

/// Interprets `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`
/// and friends: `Ok(None)` when `v` is not a tensor, an error (the reason,
/// without the tensor's name, which is joined only when needed) when it is
/// one with impossible metadata.
fn tensor_ref(g: &Graph, v: &Value) -> Result<Option<TensorRef>, String> {
    let Some(Node::Object(o)) = g.node(v) else {
        return Ok(None);
    };
    let (mut class, mut args) = (&o.class, g.args(o));
    for _ in 0..MAX_TENSOR_WRAPPING {
        match global_name(class) {
            Some(("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor")) => {
                return rebuild_tensor(g, args);
            }
            // nn.Parameter wraps the tensor.
            Some(("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state")) => {
                let Some(Node::Object(o)) = args.first().and_then(|a| g.node(a)) else {
                    return Ok(None);
                };
                (class, args) = (&o.class, g.args(o));
            }
            // Tensor subclasses: (rebuild function, subclass, its arguments,
            // state); the rebuild function is read as if called directly.
            Some(("torch._tensor", "_rebuild_from_type_v2")) => {
                let (Some(f), Some(inner)) = (args.first(), args.get(2).and_then(|a| g.seq(a)))
                else {
                    return Ok(None);
                };
                (class, args) = (f, inner);
            }
            _ => return Ok(None),
        }
    }
    Err(format!(
        "wrapped in more than {MAX_TENSOR_WRAPPING} rebuild calls (the limit \
         MAX_TENSOR_WRAPPING)"
    ))
}

fn rebuild_tensor(g: &Graph, args: &[Value]) -> Result<Option<TensorRef>, String> {
    let Some(Node::PersistentId(pid)) = args.first().and_then(|a| g.node(a)) else {
        return Ok(None);
    };
    // ('storage', StorageType, key, location, numel[, view metadata])
    let Some(pid) = g.seq(pid) else {
        return Ok(None);
    };
    let (Some((_, storage_type)), Some(Value::Str(key))) =
        (pid.get(1).and_then(global_name), pid.get(2))
    else {
        return Ok(None);
    };
    let Some(dtype) = storage_dtype(storage_type) else {
        return Ok(None);
    };
    let (Some(offset), Some(size), Some(stride)) = (args.get(1), args.get(2), args.get(3)) else {
        return Err("rebuild call without size and stride".into());
    };
    let offset = match offset {
        Value::Int(o) => usize::try_from(*o).map_err(|_| format!("negative storage offset {o}"))?,
        _ => return Err("storage offset is not an integer".into()),
    };
    Ok(Some(TensorRef {
        storage_key: key.to_string(),
        dtype,
        offset,
        shape: dims(g, size, "size")?,
        stride: dims(g, stride, "stride")?,
    }))
}

fn key_name(k: &Value) -> Option<String> {
    match k {
        Value::Str(s) => Some(s.to_string()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// One container on the walk's path: its node, the next child to visit, the
/// key that led to it and the length of its dotted name.
struct Frame {
    node: usize,
    next: usize,
    key: String,
    name_len: usize,
}

/// The `n`th child of node `i` (key, value), in the order the walk visits
/// them: a list subclass's items, its `BUILD` state (under the object's
/// own name), then its dict items; `None` past the last. A child whose key
/// is not a string or integer has no name and is skipped (`Some(None)`).
fn child(node: &Node, n: usize) -> Option<Option<(Option<String>, &Value)>> {
    fn pair(pairs: &[(Value, Value)], n: usize) -> Option<Option<(Option<String>, &Value)>> {
        let (k, v) = pairs.get(n)?;
        Some(key_name(k).map(|k| (Some(k), v)))
    }
    fn item(items: &[Value], n: usize) -> Option<Option<(Option<String>, &Value)>> {
        items.get(n).map(|v| Some((Some(n.to_string()), v)))
    }
    match node {
        Node::Dict(pairs) => pair(pairs, n),
        Node::Tuple(items) | Node::List(items) => item(items, n),
        Node::Object(o) => {
            let state = usize::from(o.state.is_some());
            if n < o.list.len() {
                item(&o.list, n)
            } else if n < o.list.len() + state {
                o.state.as_ref().map(|s| Some((None, s)))
            } else {
                pair(&o.items, n - o.list.len() - state)
            }
        }
        Node::PersistentId(_) => None,
    }
}

/// Walks the graph from `root` depth first, collecting every tensor by its
/// dotted path. Tensors inside opaque objects' `BUILD` state are found too
/// (optimizer states, hyper-parameter containers); the registry decides
/// what to use. The walk keeps only the current path (one frame per level,
/// each with its own key) and visits each container once, so it is linear
/// in the graph's size whatever its depth; names are joined only for
/// tensors.
fn collect(g: &Graph, root: &Value) -> Result<Vec<(String, TensorRef)>, CheckpointError> {
    let fail = CheckpointError::format;
    let mut out = Vec::new();
    if let Some(t) = tensor_ref(g, root).map_err(|e| fail(format!("tensor '': {e}")))? {
        out.push((String::new(), t));
        return Ok(out);
    }
    let Value::Ref(root) = *root else {
        return Ok(out);
    };
    let mut seen = HashSet::from([root]);
    let mut path = vec![Frame {
        node: root,
        next: 0,
        key: String::new(),
        name_len: 0,
    }];
    while let Some(top) = path.last_mut() {
        let Some(next) = child(&g.nodes[top.node], top.next) else {
            path.pop();
            continue;
        };
        top.next += 1;
        let Some((key, v)) = next else { continue };
        let name_len = match &key {
            Some(k) if top.name_len == 0 => k.len(),
            Some(k) => top.name_len.saturating_add(1 + k.len()),
            None => top.name_len,
        };
        // The dotted name, or its first `keys` keys.
        let name = |keys: usize| {
            let all = path.iter().skip(1).map(|f| f.key.as_str());
            let all = all.chain(key.as_deref()).filter(|k| !k.is_empty());
            all.take(keys).collect::<Vec<_>>().join(".")
        };
        let t = tensor_ref(g, v)
            .map_err(|e| fail(format!("tensor '{}': {e}", short(&name, name_len))))?;
        if let Some(t) = t {
            if name_len > MAX_NAME_LEN {
                return Err(fail(format!(
                    "tensor name of {name_len} bytes, longer than {MAX_NAME_LEN} (the limit \
                     MAX_NAME_LEN): '{}'",
                    short(&name, name_len)
                )));
            }
            if out.len() == MAX_TENSORS {
                return Err(fail(format!(
                    "more than {MAX_TENSORS} tensors (the limit MAX_TENSORS)"
                )));
            }
            out.push((name(usize::MAX), t));
            continue;
        }
        let Value::Ref(i) = *v else { continue };
        if !seen.insert(i) {
            continue;
        }
        if path.len() > MAX_DEPTH {
            return Err(fail(format!(
                "the checkpoint nests deeper than {MAX_DEPTH} levels (the limit MAX_DEPTH) at '{}'",
                short(&name, name_len)
            )));
        }
        path.push(Frame {
            node: i,
            next: 0,
            key: key.unwrap_or_default(),
            name_len,
        });
    }
    Ok(out)
}

/// A name for messages: in full when short, else its first keys and its
/// length (never joined in full, so a hostile path costs nothing to show).
fn short(name: &dyn Fn(usize) -> String, len: usize) -> String {
    const SHOWN: usize = 200;
    if len <= SHOWN {
        name(usize::MAX)
    } else {
        let head: String = name(8).chars().take(SHOWN).collect();
        format!("{head}... ({len} bytes)")
    }
}

/// Copies the viewed elements of `storage` into a contiguous buffer. Its
/// size is checked against the storage, and taken from `budget` (the bytes
/// the checkpoint's tensors may still take), before anything is allocated.
fn materialise(
    name: &str,
    t: &TensorRef,
    storage: &[u8],
    budget: &mut usize,
) -> Result<RawTensor, CheckpointError> {
    let bad = |reason: String| CheckpointError::format(format!("tensor '{name}': {reason}"));
    let size = t.dtype.size();
    if t.shape.len() != t.stride.len() {
        return Err(bad("size and stride ranks differ".into()));
    }
    let numel = t
        .shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| bad(format!("shape {:?} declares over 2^64 elements", t.shape)))?;
    // The furthest element the view touches must lie inside the storage.
    let last = t
        .shape
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset, |at, (&n, &s)| {
            n.saturating_sub(1).checked_mul(s)?.checked_add(at)
        });
    let held = storage.len() / size;
    if numel > 0 && last.is_none_or(|last| last >= held) {
        return Err(bad(format!(
            "reaches past the end of its storage '{}' (truncated file?)",
            t.storage_key
        )));
    }
    // In bounds, but a view may still read its storage many times over
    // (stride 0, or overlapping rows), and many tensors may view one storage.
    let bytes = numel
        .checked_mul(size)
        .filter(|&b| b <= *budget)
        .ok_or_else(|| {
            bad(format!(
                "shape {:?} declares {numel} elements, which with the tensors before it take \
             more than {MAX_EXPANSION} times the file's size (the limit MAX_EXPANSION)",
                t.shape
            ))
        })?;
    *budget -= bytes;
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
    let mut budget = bytes.len().saturating_mul(MAX_EXPANSION);
    for (name, t) in collect(&graph, &root)? {
        let entry = format!("{prefix}data/{}", t.storage_key);
        let storage = zip.get(bytes, &entry).ok_or_else(|| {
            CheckpointError::format(format!(
                "tensor '{name}': storage '{entry}' missing from the archive"
            ))
        })?;
        let raw = materialise(&name, &t, storage, &mut budget)?;
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
        && unpickle(bytes).is_ok_and(|(_, v, _)| v == Value::Bytes(LEGACY_MAGIC.into()))
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
    let refs = collect(&graph, &root)?;
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
        // The declared size is checked against the bytes left, so nothing is
        // allocated for a size the file does not hold.
        let left = bytes.len() - at;
        if len > left {
            return Err(CheckpointError::format(format!(
                "legacy checkpoint truncated inside storage '{key}': it declares {count} \
                 elements ({len} bytes), {left} bytes are left"
            )));
        }
        let data = &bytes[at..at + len];
        at += len;
        storages.insert(key.clone(), data);
    }
    let mut tensors = BTreeMap::new();
    let mut budget = bytes.len().saturating_mul(MAX_EXPANSION);
    for (name, t) in refs {
        let storage = storages.get(&t.storage_key).ok_or_else(|| {
            CheckpointError::format(format!(
                "tensor '{name}': storage '{}' missing",
                t.storage_key
            ))
        })?;
        let raw = materialise(&name, &t, storage, &mut budget)?;
        tensors.insert(name, raw);
    }
    Ok(tensors)
}
