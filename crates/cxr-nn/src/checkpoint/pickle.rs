//! A non-executing unpickler for checkpoint files.
//!
//! It builds an object graph instead of calling anything: a `GLOBAL` is just a
//! (module, name) pair, `REDUCE`/`NEWOBJ` make an opaque object that remembers
//! its class and arguments, and `SETITEMS`/`APPENDS`/`BUILD` on such an object
//! record their items (so dict subclasses such as `OrderedDict`, Lightning's
//! `AttributeDict` or OmegaConf containers stay readable). Nothing from the
//! file is ever imported or run, so a pickle that names `os.system` is only
//! data. Containers live in an arena and are referenced by index, because the
//! pickle memo shares objects that are mutated after being memoised. The
//! arena also keeps every structure flat: nothing here recurses over a value,
//! so neither building, walking, printing nor dropping a deeply nested pickle
//! can overflow the call stack. Strings, byte strings and REDUCE arguments are
//! shared rather than copied when the memo or `DUP` repeats them, so memory
//! grows with the pickle's length, and the limits below bound that length's
//! worth of objects far above what `torch.save` ever writes.

use std::collections::HashMap;
use std::sync::Arc;

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
    /// A string (shared: the memo may repeat it any number of times).
    Str(Arc<str>),
    /// A byte string (shared, as [`Value::Str`]).
    Bytes(Arc<[u8]>),
    /// A global reference (module, qualified name); never resolved.
    Global(Arc<str>, Arc<str>),
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
    /// The result of calling `class(*args)`, never actually called (boxed:
    /// the other nodes are a third of its size, and a hostile pickle may
    /// hold millions of them).
    Object(Box<Object>),
    /// A persistent id (how torch refers to tensor storages).
    PersistentId(Value),
}

/// What `REDUCE`/`NEWOBJ` and later opcodes record of an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// The callable: usually [`Value::Global`].
    pub class: Value,
    /// The argument tuple as pushed (a reference, not a copy: a pickle may
    /// pass one large memoised tuple to any number of calls); read it
    /// with [`Graph::args`].
    pub args: Value,
    /// State from `BUILD`.
    pub state: Option<Value>,
    /// Items added by `SETITEM(S)` (dict subclasses).
    pub items: Vec<(Value, Value)>,
    /// Items added by `APPEND(S)` (list subclasses).
    pub list: Vec<Value>,
}

/// How deeply MARKs may nest (containers being built inside each other).
/// Python's pickler recurses once or twice per level and stops at its
/// recursion limit (1000 frames by default), so `torch.save` output never
/// nests more than a few hundred levels; a state dict nests two to five.
/// The limit is ten times the default recursion limit, for a pickler run
/// with a raised one.
pub const MAX_NESTING: usize = 10_000;

/// How many values the unpickler's stack may hold at once. A flat tuple's
/// items all sit on the stack before `TUPLE` collects them, and lists and
/// dicts arrive in batches of 1000, so a checkpoint stays in the
/// thousands; a million values is about 40 MB.
pub const MAX_STACK: usize = 1 << 20;

/// How many containers and objects one pickle may create. A tensor costs
/// about eight (the rebuild call, its argument, size and stride tuples, the
/// persistent id and its tuple, the hooks dict), so a checkpoint of tens of
/// thousands of tensors with an optimizer state stays under half a million
/// (and [`super::torch::MAX_TENSORS`] allows 65536 tensors); a million
/// nodes, with their items and memo entries, take about 150 MB.
pub const MAX_NODES: usize = 1 << 20;

/// How many entries the memo may hold: at most one per object or string,
/// so the same bound as [`MAX_NODES`].
pub const MAX_MEMO: usize = 1 << 20;

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

    /// The positional arguments of an object (none when its argument
    /// value is not a tuple or list).
    pub fn args<'a>(&'a self, o: &'a Object) -> &'a [Value] {
        self.seq(&o.args).unwrap_or(&[])
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    /// The next `n` bytes. A declared length is checked against the bytes
    /// left before anything is allocated for it.
    fn take(&mut self, n: usize) -> Result<&[u8], CheckpointError> {
        let left = self.b.len() - self.at;
        if n > left {
            return Err(CheckpointError::format(format!(
                "pickle truncated at byte {}: {n} bytes declared, {left} left",
                self.at
            )));
        }
        let end = self.at + n;
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
        let n = rest.iter().position(|&c| c == b'\n').ok_or_else(|| {
            CheckpointError::format(format!(
                "pickle: unterminated text argument at byte {}",
                self.at
            ))
        })?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.at += n + 1;
        Ok(s)
    }
    fn string(&mut self, n: usize) -> Result<Value, CheckpointError> {
        Ok(Value::Str(String::from_utf8_lossy(self.take(n)?).into()))
    }
    fn bytes(&mut self, n: usize) -> Result<Value, CheckpointError> {
        Ok(Value::Bytes(self.take(n)?.into()))
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
        Value::Bytes(bytes.into())
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
                stack.push(r.string(n)?);
            }
            0x8c => {
                let n = usize::from(r.u8()?);
                stack.push(r.string(n)?);
            }
            0x8d => {
                let n = usize::try_from(r.u64()?).map_err(|_| bad("huge string", at))?;
                stack.push(r.string(n)?);
            }
            b'U' => {
                let n = usize::from(r.u8()?);
                stack.push(r.string(n)?);
            }
            b'T' => {
                let n = r.u32()? as usize;
                stack.push(r.string(n)?);
            }
            b'C' => {
                let n = usize::from(r.u8()?);
                stack.push(r.bytes(n)?);
            }
            b'B' => {
                let n = r.u32()? as usize;
                stack.push(r.bytes(n)?);
            }
            0x8e | 0x96 => {
                let n = usize::try_from(r.u64()?).map_err(|_| bad("huge bytes", at))?;
                stack.push(r.bytes(n)?);
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
                        // Exact on the first append: a one-item list
                        // would otherwise reserve four, and a hostile
                        // pickle may hold a million of them.
                        Node::List(v) if v.is_empty() => *v = items,
                        Node::List(v) => v.extend(items),
                        Node::Object(o) => o.list.extend(items),
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
                        Node::Object(o) => o.items.extend(pairs),
                        _ => return Err(bad("SETITEM on a non-dict", at)),
                    },
                    _ => return Err(bad("SETITEM on a non-dict", at)),
                }
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                stack.push(Value::Global(module.into(), name.into()));
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
                stack.push(g.add(Node::Object(Box::new(Object {
                    class,
                    args,
                    state: None,
                    items: vec![],
                    list: vec![],
                }))));
            }
            b'b' => {
                let new_state = pop(&mut stack)?;
                if let Some(Value::Ref(i)) = stack.last()
                    && let Node::Object(o) = &mut g.nodes[*i]
                {
                    o.state = Some(new_state);
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
                stack.push(g.add(Node::PersistentId(Value::Str(pid.into()))));
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
        // One opcode adds at most one value, mark, object or memo entry, so
        // checking after each keeps every count at its limit.
        let over = |what: String, name: &str| {
            CheckpointError::format(format!("pickle: {what} (the limit {name}) at byte {at}"))
        };
        if marks.len() > MAX_NESTING {
            return Err(over(
                format!("MARKs nest deeper than {MAX_NESTING}"),
                "MAX_NESTING",
            ));
        }
        if stack.len() > MAX_STACK {
            return Err(over(
                format!("stack holds more than {MAX_STACK} values"),
                "MAX_STACK",
            ));
        }
        if g.nodes.len() > MAX_NODES {
            return Err(over(format!("more than {MAX_NODES} objects"), "MAX_NODES"));
        }
        if memo.len() > MAX_MEMO {
            return Err(over(
                format!("more than {MAX_MEMO} memo entries"),
                "MAX_MEMO",
            ));
        }
    }
}
