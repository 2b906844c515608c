//! Conversion throughput (decode + 8-bit mapping + resize + shard write).
//!
//! ```text
//! cargo bench -p cxr-data --bench convert -- gen DIR N BITS [SIDE]   # synthetic PNGs + labels.csv
//! cargo bench -p cxr-data --bench convert -- run DIR OUT THREADS     # convert, print images/s
//! cargo bench -p cxr-data --bench convert -- stages DIR              # per-stage ms per image
//! ```
//! The numbers and the matching PIL run are in docs/bench-convert.md.

use std::path::Path;
use std::time::Instant;

use cxr_data::convert::{ConvertOptions, convert};
use cxr_data::csv_source::{CsvSpec, read_generic};
use cxr_data::labels::Task;

/// Chest-film-like content (smooth structure plus grain) so PNG sizes are realistic.
fn generate(dir: &Path, n: usize, bits: u8, side: u32) {
    std::fs::create_dir_all(dir.join("images")).unwrap();
    let mut csv = String::from("path,patient,label\n");
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for i in 0..n {
        let name = format!("images/{i:06}.png");
        let mut noise = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 17) as f32 - 8.0
        };
        let phase = i as f32 * 0.37;
        let value = |x: u32, y: u32, noise: f32| {
            let (fx, fy) = (x as f32 / side as f32, y as f32 / side as f32);
            let lungs = ((fx - 0.3).powi(2) + (fy - 0.45).powi(2))
                .min((fx - 0.7).powi(2) + (fy - 0.45).powi(2));
            let base = 0.35 + 0.5 * (lungs * 8.0).min(1.0) + 0.05 * (fx * 40.0 + phase).sin();
            (base * 255.0 + noise).clamp(0.0, 255.0) / 255.0
        };
        let path = dir.join(&name);
        if bits == 16 {
            let img =
                image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(side, side, |x, y| {
                    image::Luma([(value(x, y, noise()) * 4095.0) as u16])
                });
            img.save(&path).unwrap();
        } else {
            let img = image::GrayImage::from_fn(side, side, |x, y| {
                image::Luma([(value(x, y, noise()) * 255.0) as u8])
            });
            img.save(&path).unwrap();
        }
        csv += &format!("{name},p{},{}\n", i / 3, i % 2);
    }
    std::fs::write(dir.join("labels.csv"), csv).unwrap();
}

fn run(dir: &Path, out: &Path, threads: usize) {
    let spec = CsvSpec {
        csv: dir.join("labels.csv"),
        path_column: "path".into(),
        label_columns: vec!["label".into()],
        task: Task::Binary,
        patient_column: Some("patient".into()),
        split_column: None,
    };
    let table = read_generic(&spec).unwrap();
    let mut opts = ConvertOptions::new(out);
    opts.force = true;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let start = Instant::now();
    let s = pool.install(|| convert(&table, dir, "csv", &opts)).unwrap();
    let secs = start.elapsed().as_secs_f64();
    let n = s.meta.splits.values().sum::<usize>();
    println!(
        "rust convert: {n} images, {threads} threads, {secs:.2} s, {:.1} images/s, skipped {}",
        n as f64 / secs,
        s.skipped.len()
    );
}

/// Single-thread time per stage over the images of DIR (for tuning).
fn stages(dir: &Path) {
    use cxr_data::preprocess::{ResizePolicy, resize, to_u8};
    let mut t = [0f64; 4];
    let mut n = 0;
    for e in std::fs::read_dir(dir.join("images")).unwrap().take(100) {
        let path = e.unwrap().path();
        let a = Instant::now();
        let bytes = std::fs::read(&path).unwrap();
        let b = Instant::now();
        let img = cxr_data::decode::decode_bytes(&path, &bytes).unwrap();
        let c = Instant::now();
        let (w, h) = (img.width, img.height);
        let u = to_u8(img);
        let d = Instant::now();
        let r = resize(u, w, h, 224, ResizePolicy::Squash);
        let e = Instant::now();
        assert_eq!(r.len(), 224 * 224);
        for (k, (x, y)) in [(a, b), (b, c), (c, d), (d, e)].into_iter().enumerate() {
            t[k] += (y - x).as_secs_f64();
        }
        n += 1;
    }
    let ms = t.map(|s| 1000.0 * s / n as f64);
    println!(
        "per image (ms): read {:.2}, decode {:.2}, to_u8 {:.2}, resize {:.2}",
        ms[0], ms[1], ms[2], ms[3]
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("gen") => generate(
            Path::new(&args[1]),
            args[2].parse().unwrap(),
            args[3].parse().unwrap(),
            args.get(4).map_or(1024, |s| s.parse().unwrap()),
        ),
        Some("stages") => stages(Path::new(&args[1])),
        Some("run") => run(
            Path::new(&args[1]),
            Path::new(&args[2]),
            args[3].parse().unwrap(),
        ),
        _ => eprintln!("usage: convert gen DIR N BITS [SIDE] | run DIR OUT THREADS | stages DIR"),
    }
}
