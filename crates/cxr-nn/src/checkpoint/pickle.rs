//! A non-executing unpickler for checkpoint files.
//!
//! It builds an object graph instead of calling anything: a `GLOBAL` is just a
//! (module, name) pair, `REDUCE`/`NEWOBJ` make an opaque object that remembers
//! its class and arguments, and `SETITEMS`/`APPENDS`/`BUILD` on such an object
//! record their items (so dict subclasses such as `OrderedDict`, Lightning's
//! `AttributeDict` or OmegaConf containers stay readable). Nothing from the
//! file is ever imported or run, so a pickle that names `os.system` is only
//! data. Containers live in an arena and are referenced by index, because the
//! pickle memo shares objects that are mutated after being memoised.

use std::collections::HashMap;

use super::CheckpointError;

/// A value on the unpickler's stack.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Python `None`.
    None,
    /// A boolean.
    Bool(bool),
    /// An integer that fits in 64 bits.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A global reference (module, qualified name); never resolved.
    Global(String, String),
    /// A container or object in the arena.
    Ref(usize),
}

/// A compound object.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A tuple.
    Tuple(Vec<Value>),
    /// A list (or set).
    List(Vec<Value>),
    /// A dict, in insertion order.
    Dict(Vec<(Value, Value)>),
    /// The result of calling `class(*args)`, never actually called.
    Object {
        /// The callable: usually [`Value::Global`].
        class: Value,
        /// Positional arguments.
        args: Vec<Value>,
        /// State from `BUILD`.
        state: Option<Value>,
        /// Items added by `SETITEM(S)` (dict subclasses).
        items: Vec<(Value, Value)>,
        /// Items added by `APPEND(S)` (list subclasses).
        list: Vec<Value>,
    },
    /// A persistent id (how torch refers to tensor storages).
    PersistentId(Value),
}

/// The result of unpickling: the arena and the root value.
#[derive(Debug, Default)]
pub struct Graph {
    /// Every compound object, addressed by [`Value::Ref`].
    pub nodes: Vec<Node>,
}

impl Graph {
    fn add(&mut self, node: Node) -> Value {
        self.nodes.push(node);
        Value::Ref(self.nodes.len() - 1)
    }

    /// The node behind `v`, if it is a reference.
    pub fn node(&self, v: &Value) -> Option<&Node> {
        match v {
            Value::Ref(i) => self.nodes.get(*i),
            _ => None,
        }
    }

    /// The elements of a tuple or list value.
    pub fn seq(&self, v: &Value) -> Option<&[Value]> {
        match self.node(v)? {
            Node::Tuple(x) | Node::List(x) => Some(x),
            _ => None,
        }
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], CheckpointError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| {
                CheckpointError::format(format!("pickle truncated at byte {}", self.at))
            })?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, CheckpointError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, CheckpointError> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32, CheckpointError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, CheckpointError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn line(&mut self) -> Result<String, CheckpointError> {
        let rest = &self.b[self.at..];
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or_else(|| CheckpointError::format("pickle: unterminated text argument".into()))?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.at += n + 1;
        Ok(s)
    }
    fn string(&mut self, n: usize) -> Result<String, CheckpointError> {
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
}

/// Little-endian two's-complement integer of any length (`LONG1`/`LONG4`).
fn long(bytes: &[u8]) -> Value {
    if bytes.len() <= 8 {
        let mut buf = if bytes.last().is_some_and(|&b| b & 0x80 != 0) {
            [0xFF; 8]
        } else {
            [0; 8]
        };
        buf[..bytes.len()].copy_from_slice(bytes);
        Value::Int(i64::from_le_bytes(buf))
    } else {
        // Too large for checkpoint metadata we interpret; keep the bytes.
        Value::Bytes(bytes.to_vec())
    }
}

/// Unpickles one pickle starting at `bytes[0]`, returning the graph, the root
/// value and the number of bytes consumed.
///
/// # Errors
/// [`CheckpointError::Format`] for a truncated or malformed pickle or an
/// opcode outside protocols 0-5's binary subset.
pub fn unpickle(bytes: &[u8]) -> Result<(Graph, Value, usize), CheckpointError> {
    let mut g = Graph::default();
    let mut r = Reader { b: bytes, at: 0 };
    let mut stack: Vec<Value> = Vec::new();
    let mut marks: Vec<usize> = Vec::new();
    let mut memo: HashMap<u32, Value> = HashMap::new();
    let bad =
        |what: &str, at: usize| CheckpointError::format(format!("pickle: {what} at byte {at}"));
    loop {
        let at = r.at;
        let op = r.u8()?;
        let pop = |stack: &mut Vec<Value>| stack.pop().ok_or_else(|| bad("stack underflow", at));
        let pop_mark = |stack: &mut Vec<Value>, marks: &mut Vec<usize>| {
            let m = marks.pop().ok_or_else(|| bad("missing MARK", at))?;
            if m > stack.len() {
                return Err(bad("MARK beyond stack", at));
            }
            Ok(stack.split_off(m))
        };
        match op {
            0x80 => {
                r.u8()?; // PROTO
            }
            0x95 => {
                r.u64()?; // FRAME: framing is transparent here
            }
            b'.' => {
                let root = pop(&mut stack)?;
                return Ok((g, root, r.at));
            }
            b'(' => marks.push(stack.len()),
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool(true)),
            0x89 => stack.push(Value::Bool(false)),
            b'J' => stack.push(Value::Int(i64::from(r.u32()? as i32))),
            b'K' => stack.push(Value::Int(i64::from(r.u8()?))),
            b'M' => stack.push(Value::Int(i64::from(r.u16()?))),
            0x8a => {
                let n = usize::from(r.u8()?);
                stack.push(long(r.take(n)?));
            }
            0x8b => {
                let n = r.u32()? as usize;
                stack.push(long(r.take(n)?));
            }
            b'G' => stack.push(Value::Float(f64::from_be_bytes(
                r.take(8)?.try_into().expect("8 bytes"),
            ))),
            b'I' => {
                let line = r.line()?;
                stack.push(match line.as_str() {
                    "00" => Value::Bool(false),
                    "01" => Value::Bool(true),
                    s => Value::Int(s.parse().map_err(|_| bad("bad INT", at))?),
                });
            }
            b'X' => {
                let n = r.u32()? as usize;
                stack.push(Value::Str(r.string(n)?));
            }
            0x8c => {
                let n = usize::from(r.u8()?);
                stack.push(Value::Str(r.string(n)?));
            }
            0x8d => {
                let n = usize::try_from(r.u64()?).map_err(|_| bad("huge string", at))?;
                stack.push(Value::Str(r.string(n)?));
            }
            b'U' => {
                let n = usize::from(r.u8()?);
                stack.push(Value::Str(r.string(n)?));
            }
            b'T' => {
                let n = r.u32()? as usize;
                stack.push(Value::Str(r.string(n)?));
            }
            b'C' => {
                let n = usize::from(r.u8()?);
                stack.push(Value::Bytes(r.take(n)?.to_vec()));
            }
            b'B' => {
                let n = r.u32()? as usize;
                stack.push(Value::Bytes(r.take(n)?.to_vec()));
            }
            0x8e | 0x96 => {
                let n = usize::try_from(r.u64()?).map_err(|_| bad("huge bytes", at))?;
                stack.push(Value::Bytes(r.take(n)?.to_vec()));
            }
            b')' => stack.push(g.add(Node::Tuple(vec![]))),
            b't' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                stack.push(g.add(Node::Tuple(items)));
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                if stack.len() < n {
                    return Err(bad("stack underflow", at));
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(g.add(Node::Tuple(items)));
            }
            b']' | 0x8f => stack.push(g.add(Node::List(vec![]))),
            b'l' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                stack.push(g.add(Node::List(items)));
            }
            b'}' => stack.push(g.add(Node::Dict(vec![]))),
            b'd' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                let pairs = items
                    .chunks(2)
                    .filter(|c| c.len() == 2)
                    .map(|c| (c[0].clone(), c[1].clone()))
                    .collect();
                stack.push(g.add(Node::Dict(pairs)));
            }
            0x91 => {
                let items = pop_mark(&mut stack, &mut marks)?;
                stack.push(g.add(Node::List(items)));
            }
            b'a' | b'e' | 0x90 => {
                let items = if op == b'a' {
                    vec![pop(&mut stack)?]
                } else {
                    pop_mark(&mut stack, &mut marks)?
                };
                let target = stack.last().ok_or_else(|| bad("APPEND without list", at))?;
                match target {
                    Value::Ref(i) => match &mut g.nodes[*i] {
                        Node::List(v) => v.extend(items),
                        Node::Object { list, .. } => list.extend(items),
                        _ => return Err(bad("APPEND to a non-list", at)),
                    },
                    _ => return Err(bad("APPEND to a non-list", at)),
                }
            }
            b's' | b'u' => {
                let items = if op == b's' {
                    let v = pop(&mut stack)?;
                    let k = pop(&mut stack)?;
                    vec![k, v]
                } else {
                    pop_mark(&mut stack, &mut marks)?
                };
                let pairs = items
                    .chunks(2)
                    .filter(|c| c.len() == 2)
                    .map(|c| (c[0].clone(), c[1].clone()));
                match stack.last() {
                    Some(Value::Ref(i)) => match &mut g.nodes[*i] {
                        Node::Dict(d) => d.extend(pairs),
                        Node::Object { items, .. } => items.extend(pairs),
                        _ => return Err(bad("SETITEM on a non-dict", at)),
                    },
                    _ => return Err(bad("SETITEM on a non-dict", at)),
                }
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                stack.push(Value::Global(module, name));
            }
            0x93 => {
                let name = pop(&mut stack)?;
                let module = pop(&mut stack)?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => stack.push(Value::Global(m, n)),
                    _ => return Err(bad("STACK_GLOBAL without strings", at)),
                }
            }
            // REDUCE and NEWOBJ: (class, args); NEWOBJ_EX also has kwargs,
            // which only matter to the constructor that is never called.
            b'R' | 0x81 | 0x92 => {
                if op == 0x92 {
                    pop(&mut stack)?;
                }
                let args = pop(&mut stack)?;
                let class = pop(&mut stack)?;
                let args = g.seq(&args).map(<[Value]>::to_vec).unwrap_or_default();
                stack.push(g.add(Node::Object {
                    class,
                    args,
                    state: None,
                    items: vec![],
                    list: vec![],
                }));
            }
            b'b' => {
                let new_state = pop(&mut stack)?;
                if let Some(Value::Ref(i)) = stack.last()
                    && let Node::Object { state, .. } = &mut g.nodes[*i]
                {
                    *state = Some(new_state);
                }
                // BUILD on anything else (a dict's __setstate__) only sets
                // attributes, which checkpoints never need.
            }
            b'Q' => {
                let pid = pop(&mut stack)?;
                stack.push(g.add(Node::PersistentId(pid)));
            }
            b'P' => {
                let pid = r.line()?;
                stack.push(g.add(Node::PersistentId(Value::Str(pid))));
            }
            b'q' => {
                let k = u32::from(r.u8()?);
                memo.insert(
                    k,
                    stack
                        .last()
                        .cloned()
                        .ok_or_else(|| bad("empty stack", at))?,
                );
            }
            b'r' => {
                let k = r.u32()?;
                memo.insert(
                    k,
                    stack
                        .last()
                        .cloned()
                        .ok_or_else(|| bad("empty stack", at))?,
                );
            }
            0x94 => {
                let k = memo.len() as u32;
                memo.insert(
                    k,
                    stack
                        .last()
                        .cloned()
                        .ok_or_else(|| bad("empty stack", at))?,
                );
            }
            b'p' => {
                let k = r.line()?.parse().map_err(|_| bad("bad PUT", at))?;
                memo.insert(
                    k,
                    stack
                        .last()
                        .cloned()
                        .ok_or_else(|| bad("empty stack", at))?,
                );
            }
            b'h' | b'j' | b'g' => {
                let k = match op {
                    b'h' => u32::from(r.u8()?),
                    b'j' => r.u32()?,
                    _ => r.line()?.parse().map_err(|_| bad("bad GET", at))?,
                };
                stack.push(
                    memo.get(&k)
                        .cloned()
                        .ok_or_else(|| bad("memo key missing", at))?,
                );
            }
            b'0' => {
                pop(&mut stack)?;
            }
            b'1' => {
                pop_mark(&mut stack, &mut marks)?;
            }
            b'2' => {
                let top = stack
                    .last()
                    .cloned()
                    .ok_or_else(|| bad("empty stack", at))?;
                stack.push(top);
            }
            other => {
                return Err(CheckpointError::format(format!(
                    "pickle: unsupported opcode 0x{other:02x} at byte {at}"
                )));
            }
        }
    }
}
