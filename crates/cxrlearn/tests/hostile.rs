//! Hostile inputs end in one clear error within bounded memory and time
//! (docs/limits.md). The cases live beside the command they attack; this
//! file checks the limits themselves.

use crate::common::{HOSTILE_MEMORY, run_limited};

/// The memory limit leaves room for the program itself (libtorch loads
/// under it), so a case that fails under it failed on its input.
#[test]
fn the_memory_limit_leaves_room_for_libtorch() {
    let (out, _) = run_limited(&["--version"], HOSTILE_MEMORY);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The limit bites: a process that allocates beyond it is stopped (so a
/// hostile case passing under it did not allocate its declared size).
#[test]
fn the_memory_limit_bites() {
    let (out, _) = run_limited(&["--version"], 64 << 20);
    assert!(!out.status.success());
}
