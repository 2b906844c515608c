//! The momentum-contrast engine of MoCo-CXR and MedAug (MoCo v2): a query
//! encoder trained by gradient, a key encoder following it by EMA, a ring
//! buffer of past keys as negatives (docs/ssl-methods.md (MoCo-CXR, MedAug)).
//!
//! One device has no cross-GPU "shuffle BN", and shuffling inside one batch
//! changes nothing (docs/ssl-methods.md (Pitfalls)): keys are shuffled across `ghost_batches` groups
//! whose batch-norm statistics are computed separately, so a query's
//! positive key never shares normalisation statistics with it.

use std::collections::BTreeMap;

use cxr_nn::backbone::Backbone;
use cxr_nn::spec::ModelSpec;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use tch::nn::{self, Module, VarStore};
use tch::{Device, Kind, Tensor};

use serde_json::{Map, Value, json};

use super::blocks::{
    Mlp, ema_update, l2_normalize, load_state_of, monitors, queue_info_nce, state_of,
};
use super::{Objective, Views};
use crate::dist::DataParallel;
use crate::error::Error;

/// MoCo hyperparameters.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MocoConfig {
    /// Softmax temperature (MoCo-CXR: 0.2).
    pub temperature: f64,
    /// Queue length; a multiple of the batch size.
    pub queue: usize,
    /// EMA momentum of the key encoder (0.999; 0.99 at tiny scale).
    pub momentum: f64,
    /// Projection output dimension (128).
    pub dim: i64,
    /// Groups with separate batch-norm statistics for the key shuffle.
    pub ghost_batches: usize,
}

/// Builds a projection head under the given path (the branch's `fc`) from
/// the backbone's feature dimension to the embedding dimension, so methods
/// of the MoCo family can swap MoCo v2's head for their own.
pub(crate) type HeadBuilder = fn(&nn::Path, i64, i64) -> Box<dyn Module>;

/// MoCo v2's head, `Linear(f, f) → ReLU → Linear(f, dim)`.
pub(crate) fn mocov2_head(p: &nn::Path, f: i64, dim: i64) -> Box<dyn Module> {
    Box::new(Mlp::new(p, f, f, dim))
}

/// MoCo's contrastive loss from unit queries `q` and keys `k` (`[b, d]`) and
/// the queue (`[n, d]`) as it stood before this batch's keys enter it: the
/// cross-entropy of `[q·k, q·queue] / t` against index 0, averaged over the
/// batch, and the positive's top-1 accuracy. No gradient flows into `k`, as
/// facebookresearch/moco computes its keys under `no_grad` (the trainer's
/// keys already carry none; the detach makes the function say so itself).
pub(crate) fn contrastive_loss(
    q: &Tensor,
    k: &Tensor,
    queue: &Tensor,
    temperature: f64,
) -> (Tensor, f64) {
    queue_info_nce(q, &k.detach(), queue, temperature)
}

/// MoCo's `_dequeue_and_enqueue`: overwrites the `keys.size()[0]` rows of
/// `queue` from `pointer` with `keys` and returns the pointer moved past
/// them, modulo the queue length (the queue length a multiple of the batch,
/// so a batch never straddles the end).
pub(crate) fn enqueue_keys(queue: &Tensor, pointer: i64, keys: &Tensor) -> i64 {
    let b = keys.size()[0];
    tch::no_grad(|| {
        queue.narrow(0, pointer, b).copy_(keys);
    });
    (pointer + b) % queue.size()[0]
}

/// One encoder (backbone + projection head) in its own variable store.
#[derive(Debug)]
struct Branch {
    vs: VarStore,
    backbone: Backbone,
    head: Box<dyn Module>,
}

impl Branch {
    fn new(spec: &ModelSpec, dim: i64, device: Device, head: HeadBuilder) -> Self {
        let vs = VarStore::new(device);
        let backbone = Backbone::new(&vs.root(), &spec.architecture);
        let head = head(&(vs.root() / "fc"), spec.feature_dim(), dim);
        Self { vs, backbone, head }
    }

    fn embed(&self, x: &Tensor, train: bool) -> Tensor {
        l2_normalize(&self.head.forward(&self.backbone.features_t(x, train)))
    }
}

/// The MoCo model and its queue.
#[derive(Debug)]
pub struct Moco {
    query: Branch,
    key: Branch,
    queue: Tensor,
    pointer: i64,
    config: MocoConfig,
    /// Keys of the last batch, enqueued after the optimiser step.
    pending: Option<Tensor>,
    /// The process group keys are gathered over.
    dp: DataParallel,
    /// What the query backbone is.
    pub spec: ModelSpec,
}

impl Moco {
    /// Builds both encoders (the key encoder a copy of the query one) and a
    /// queue of random unit vectors, all from `seed`.
    pub fn new(spec: ModelSpec, config: MocoConfig, device: Device, seed: u64) -> Self {
        Self::with_head(spec, config, device, seed, mocov2_head)
    }

    /// As [`Moco::new`] with another projection head (S2MTS2's).
    pub(crate) fn with_head(
        spec: ModelSpec,
        config: MocoConfig,
        device: Device,
        seed: u64,
        head: HeadBuilder,
    ) -> Self {
        tch::manual_seed(seed as i64);
        let query = Branch::new(&spec, config.dim, device, head);
        let mut key = Branch::new(&spec, config.dim, device, head);
        let _ = key.vs.copy(&query.vs);
        key.vs.freeze();
        let queue = l2_normalize(&Tensor::randn(
            [config.queue as i64, config.dim],
            (Kind::Float, device),
        ));
        Self {
            query,
            key,
            queue,
            pointer: 0,
            config,
            pending: None,
            dp: DataParallel::single(),
            spec,
        }
    }

    /// The momentum update of the key encoder, `θ_k ← m·θ_k + (1 − m)·θ_q`
    /// (parameters only).
    pub(crate) fn momentum_update(&self) {
        ema_update(
            &self.key.vs.variables(),
            &self.query.vs.variables(),
            self.config.momentum,
        );
    }

    /// Unit query embeddings of `x` (with gradient when training).
    pub(crate) fn embed_query(&self, x: &Tensor, train: bool) -> Tensor {
        self.query.embed(x, train)
    }

    /// The queue of past keys, `[queue, dim]`.
    pub(crate) fn queue(&self) -> &Tensor {
        &self.queue
    }

    /// The engine's hyperparameters.
    pub(crate) fn config(&self) -> &MocoConfig {
        &self.config
    }

    /// Keeps `keys` to enqueue once the optimiser has stepped.
    pub(crate) fn defer_enqueue(&mut self, keys: Tensor) {
        self.pending = Some(keys);
    }

    /// Keys of `xk`, computed in shuffled ghost batches and unshuffled
    /// (when training: in evaluation mode the batch statistics do not
    /// enter, so the whole batch goes at once).
    pub(crate) fn keys(&self, xk: &Tensor, step_seed: u64, train: bool) -> Tensor {
        if !train {
            return self.key.embed(xk, false);
        }
        let n = xk.size()[0];
        let groups = self.config.ghost_batches.clamp(1, (n / 2).max(1) as usize) as i64;
        let mut perm: Vec<i64> = (0..n).collect();
        perm.shuffle(&mut ChaCha8Rng::seed_from_u64(step_seed));
        let perm_t = Tensor::from_slice(&perm).to_device(xk.device());
        let shuffled = xk.index_select(0, &perm_t);
        let parts: Vec<Tensor> = shuffled
            .chunk(groups, 0)
            .iter()
            .map(|part| self.key.embed(part, true))
            .collect();
        let k = Tensor::cat(&parts, 0);
        let inverse = perm_t.argsort(0, false);
        k.index_select(0, &inverse)
    }

    /// Writes `keys` into the queue at the pointer.
    /// Joins a data-parallel run: keys are gathered from every rank before
    /// they enter the queue, so every rank keeps the single-process queue.
    pub(crate) fn join(&mut self, dp: &DataParallel) {
        self.dp = dp.clone();
    }

    /// The per-query mean over this rank's slice as its share of the global
    /// mean (equal slices).
    pub(crate) fn share(&self, loss: Tensor) -> Tensor {
        match self.dp.world_size() {
            1 => loss,
            w => loss / w as f64,
        }
    }

    /// Enqueues the keys deferred by the last loss, gathered from every rank
    /// in rank order.
    pub(crate) fn flush(&mut self) -> Result<(), Error> {
        if let Some(k) = self.pending.take() {
            let all = self.dp.all_gather(&k)?;
            self.enqueue(&all);
        }
        Ok(())
    }

    fn enqueue(&mut self, keys: &Tensor) {
        self.pointer = enqueue_keys(&self.queue, self.pointer, keys);
    }
}

impl Objective for Moco {
    fn trainable(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self
            .query
            .vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The loss after the momentum update (as the reference orders it);
    /// the keys are enqueued once the optimiser has stepped.
    fn join(&mut self, dp: &DataParallel) -> bool {
        Moco::join(self, dp);
        true
    }

    fn loss(
        &mut self,
        views: &Views,
        step_seed: u64,
        train: bool,
    ) -> Result<(Tensor, Map<String, Value>), Error> {
        let xk = &views.x[1];
        if train {
            self.momentum_update();
        }
        let q = self.embed_query(views.xq(), train);
        let k = tch::no_grad(|| self.keys(xk, step_seed, train));
        let (loss, accuracy) = contrastive_loss(&q, &k, &self.queue, self.config.temperature);
        let m = monitors(&q.detach(), &k);
        if train {
            self.pending = Some(k);
        }
        let fields = json!({
            "accuracy": accuracy, "embedding_std": m.embedding_std,
            "alignment": m.alignment, "uniformity": m.uniformity,
        });
        Ok((
            self.share(loss),
            fields.as_object().cloned().unwrap_or_default(),
        ))
    }

    fn after_step(&mut self) -> Result<(), Error> {
        self.flush()
    }

    fn state(&self) -> BTreeMap<String, Tensor> {
        let mut out = state_of(&[("q.", &self.query.vs), ("k.", &self.key.vs)]);
        out.insert("queue".into(), self.queue.shallow_clone());
        out.insert("queue_ptr".into(), Tensor::from(self.pointer));
        out
    }

    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) -> Result<(), Error> {
        load_state_of(state, &[("q.", &self.query.vs), ("k.", &self.key.vs)])?;
        let lacks = |key: &str| Error::MissingState { key: key.into() };
        tch::no_grad(|| -> Result<(), Error> {
            let queue = state.get("queue").ok_or_else(|| lacks("queue"))?;
            if queue.size() != self.queue.size() {
                return Err(Error::StateShape {
                    key: "queue".into(),
                    shape: queue.size(),
                    expected: self.queue.size(),
                });
            }
            self.queue.copy_(queue);
            self.pointer = state
                .get("queue_ptr")
                .ok_or_else(|| lacks("queue_ptr"))?
                .int64_value(&[]);
            Ok(())
        })
    }

    /// The query backbone without its projection head.
    fn encoder(&self) -> BTreeMap<String, Tensor> {
        self.query
            .vs
            .variables()
            .into_iter()
            .filter(|(n, _)| !n.starts_with("fc."))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// `max |ours − theirs| / max |theirs|` (0 when both are 0).
    fn relative(ours: &Tensor, theirs: &Tensor) -> f64 {
        let diff = (ours - theirs).abs().max().double_value(&[]);
        let scale = theirs.abs().max().double_value(&[]);
        if scale == 0.0 { diff } else { diff / scale }
    }

    /// facebookresearch/moco's `MoCo.forward` and `_dequeue_and_enqueue`
    /// with main_moco's cross-entropy, run on fixed inputs by
    /// scripts/fixtures/moco_loss.py: the same loss, the same gradient with
    /// respect to the raw query embeddings (through the normalisation the
    /// encoder applies), none with respect to the keys, and the same queue
    /// and pointer after the update. Draw 2 has duplicated queue rows, keys
    /// equal to queue entries and queries equal to their keys (ties), and a
    /// pointer that wraps.
    #[test]
    fn equals_facebookresearch_moco() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/objectives");
        for draw in 1..=2 {
            let path = dir.join(format!("moco_{draw}.safetensors"));
            let f: BTreeMap<String, Tensor> = Tensor::read_safetensors(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .into_iter()
                .collect();
            let q_raw = f["q"].copy().set_requires_grad(true);
            let k_raw = f["k"].copy().set_requires_grad(true);
            let queue = f["queue"].copy();
            let t = f["temperature"].double_value(&[0]);
            // What Branch::embed ends with, on both branches.
            let (q, k) = (l2_normalize(&q_raw), l2_normalize(&k_raw));
            let (loss, _) = contrastive_loss(&q, &k, &queue, t);
            loss.backward();
            let grad_k = if k_raw.grad().defined() {
                k_raw.grad()
            } else {
                k_raw.zeros_like()
            };
            let errors = [
                relative(&loss, &f["loss"]),
                relative(&q_raw.grad(), &f["grad_q"]),
                relative(&grad_k, &f["grad_k"]),
            ];
            eprintln!("draw {draw}: relative error loss, grad q, grad k {errors:?}");
            assert!(errors.iter().all(|&e| e <= 1e-5), "draw {draw}: {errors:?}");

            let pointer = enqueue_keys(&queue, f["ptr"].int64_value(&[0]), &k);
            assert_eq!(pointer, f["ptr_after"].int64_value(&[0]), "draw {draw}");
            let e = relative(&queue, &f["queue_after"]);
            assert!(e <= 1e-6, "draw {draw}: queue after the update {e}");
        }
    }
}
