//! Phantom generation speed: writes about 1,000 images of 256x256 (PNG, CSVs,
//! JSON) into a temporary directory on one thread and on all threads.
//! Run with `cargo bench -p cxr-data --bench phantom`.

use std::time::Instant;

use cxr_data::phantom::{Phantom, PhantomConfig};

fn main() {
    let patients: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(440);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for threads in [1, cores] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        let dir = tempfile::tempdir().expect("temporary directory");
        let out = dir.path().join("phantom");
        let start = Instant::now();
        let images = pool.install(|| {
            let ph = Phantom::new(PhantomConfig {
                patients,
                size: 256,
                ..PhantomConfig::default()
            })
            .expect("valid configuration");
            ph.write(&out, false, &|_, _| {}).expect("phantom written");
            ph.images.len()
        });
        let s = start.elapsed().as_secs_f64();
        println!(
            "phantom 256x256: {images} images on {threads} thread(s) in {s:.2} s ({:.2} s per 1000 images)",
            s * 1000.0 / images as f64
        );
    }
}
