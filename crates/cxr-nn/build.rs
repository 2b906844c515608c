//! The build script of the crates that link libtorch through tch (cxr-learn,
//! cxrlearn): the rpath to libtorch.

include!("rpath.rs");

fn main() {
    emit_rpath();
}
