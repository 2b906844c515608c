//! Batches from a store for training and scoring: a background thread copies
//! images out of the memory map and augments them on all cores (rayon) while
//! the engine computes on the previous batch ([`spawn`], [`spawn_views`]),
//! or copies stored pixels as they are ([`spawn_raw`]).
//!
//! Everything random is a function of `(seed, epoch, store index)`: the
//! epoch's order comes from ChaCha8 stream `epoch`, each image's augmentation
//! from [`cxr_data::augment::rng_for`]. A run restarted at any batch sees the
//! same data as an uninterrupted one.

use std::sync::mpsc;
use std::thread::JoinHandle;

use cxr_data::augment::Augment;
use cxr_data::store::read::Store;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// One batch, images at the model's input size.
#[derive(Debug)]
pub struct Batch {
    /// Store rows.
    pub indices: Vec<usize>,
    /// `[n, s, s]` u8 pixels.
    pub images: Vec<u8>,
}

/// The training order of epoch `epoch`: `indices` shuffled by ChaCha8
/// stream `epoch` of `seed`.
pub fn epoch_order(indices: &[usize], seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch);
    let mut order = indices.to_vec();
    order.shuffle(&mut rng);
    order
}

/// The one prefetch mechanism: a thread turning each chunk into an item,
/// at most two ahead of the consumer, stopping when the receiver is dropped.
fn produce<C, T>(
    chunks: Vec<C>,
    mut make: impl FnMut(C) -> T + Send + 'static,
) -> (mpsc::Receiver<T>, JoinHandle<()>)
where
    C: Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel::<T>(2);
    let handle = std::thread::spawn(move || {
        for chunk in chunks {
            if tx.send(make(chunk)).is_err() {
                break;
            }
        }
    });
    (rx, handle)
}

/// Starts a producer thread yielding `chunks` as batches. `augment` is
/// applied with keys `(epoch << 32) | index`; its output size must be the
/// model's input size.
pub fn spawn(
    store: std::sync::Arc<Store>,
    chunks: Vec<Vec<usize>>,
    augment: Augment,
    seed: u64,
    epoch: u64,
) -> (mpsc::Receiver<Batch>, JoinHandle<()>) {
    produce(chunks, move |chunk| {
        let [h, w] = store.meta.image_size.map(|d| d as usize);
        let (oh, ow) = augment.out_size;
        let sources: Vec<&[u8]> = chunk
            .iter()
            .map(|&i| store.image(i).expect("a store with pixels"))
            .collect();
        let keys: Vec<u64> = chunk.iter().map(|&i| (epoch << 32) | i as u64).collect();
        let mut images = vec![0u8; chunk.len() * oh * ow];
        augment.batch(&sources, h, w, seed, &keys, &mut images);
        Batch {
            indices: chunk,
            images,
        }
    })
}

/// Like [`spawn`] without augmentation or resampling: the stored pixels
/// (`[n, h, w]` at the store's size), copied out of the memory map while the
/// consumer computes on the previous batch. For models that resize on their
/// own (frozen feature extraction), so the pixels they see are the store's.
pub fn spawn_raw(
    store: std::sync::Arc<Store>,
    chunks: Vec<Vec<usize>>,
) -> (mpsc::Receiver<Batch>, JoinHandle<()>) {
    produce(chunks, move |chunk| {
        let [h, w] = store.meta.image_size.map(|d| d as usize);
        let mut images = Vec::with_capacity(chunk.len() * h * w);
        for &i in &chunk {
            images.extend_from_slice(store.image(i).expect("a store with pixels"));
        }
        Batch {
            indices: chunk,
            images,
        }
    })
}

/// Several views per batch entry: view 0 is the query image, views 1.. its
/// positives (the same image again, or another image of the same patient or
/// study), one row list per view.
#[derive(Debug)]
pub struct ViewBatch {
    /// Store rows of each view, `rows[v][j]` for entry `j`.
    pub rows: Vec<Vec<usize>>,
    /// `[n, s, s]` u8 pixels of each view.
    pub images: Vec<Vec<u8>>,
}

/// Like [`spawn`] for multi-view entries: view `v` draws its augmentations
/// from seed `seed + v`, so the same image gives different views.
pub fn spawn_views(
    store: std::sync::Arc<Store>,
    chunks: Vec<Vec<Vec<usize>>>,
    augment: Augment,
    seed: u64,
    epoch: u64,
) -> (mpsc::Receiver<ViewBatch>, JoinHandle<()>) {
    let [h, w] = store.meta.image_size.map(|d| d as usize);
    let (oh, ow) = augment.out_size;
    produce(chunks, move |rows: Vec<Vec<usize>>| {
        let view = |rows: &[usize], seed: u64| {
            let sources: Vec<&[u8]> = rows
                .iter()
                .map(|&i| store.image(i).expect("a store with pixels"))
                .collect();
            let keys: Vec<u64> = rows.iter().map(|&i| (epoch << 32) | i as u64).collect();
            let mut images = vec![0u8; rows.len() * oh * ow];
            augment.batch(&sources, h, w, seed, &keys, &mut images);
            images
        };
        let images = rows
            .iter()
            .enumerate()
            .map(|(v, r)| view(r, seed.wrapping_add(v as u64)))
            .collect();
        ViewBatch { rows, images }
    })
}
