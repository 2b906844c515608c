//! The `benchmark_grid` fuzz harness, shared by the fuzz target and the CLI's
//! regression test (`cmd::benchmark::grid` tests) so both run the same code.
//! It is compiled inside the CLI's module tree, hence the `crate::` path.
//!
//! The input is written as a grid file and read twice: as `benchmark --config`
//! reads a user's grid, and as `benchmark report` reads the resolved copy a
//! run left in `DIR/config.toml`.

use crate::cmd::benchmark::grid::Grid;

/// Reads `bytes` as a grid file both ways; errors are expected, panics are
/// findings.
pub fn run(bytes: &[u8]) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, bytes).expect("writing the input");
    if let Ok(grid) = Grid::load(&path) {
        // What a run does next with a valid grid: every cell and its settings.
        for cell in grid.cells() {
            let _ = grid.cell_settings(&cell);
            let _ = grid.describe(&cell);
        }
    }
    let _ = Grid::from_run_config(&path);
}
