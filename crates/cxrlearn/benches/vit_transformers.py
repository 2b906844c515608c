"""The peer of the `vit` bench: Hugging Face transformers' Dinov2Model at RAD-DINO's shape.

    python vit_transformers.py save DIR
    python vit_transformers.py run DIR INPUTS OUT --threads N --feature-batches F
        --warmup W --steps S [--lr 1e-5] [--weight-decay 0.05]

`save` builds a seeded random `Dinov2Model(Dinov2Config(...))` of RAD-DINO's
shape (ViT-B/14: hidden 768, 12 layers, 12 heads, MLP ratio 4, patch 14,
image 518, so 37 x 37 = 1,369 patches and 1,370 tokens) and writes it with
`save_pretrained` into DIR (config.json + model.safetensors), the directory
both sides load.

`run` loads DIR with the default attention (SDPA), reads `pixel_values`
[B, 3, 518, 518] (the input cxrlearn's preprocessing made from its u8
images) and `targets` [B, K] and the head's `head.weight` / `head.bias` from INPUTS, sets torch.set_num_threads(N), and:
- features: eval mode, no_grad, `pooler_output` of the batch, one untimed
  warm-up then F timed batches; writes the warm-up's `pooler_output` to OUT
  (the bench compares it with cxrlearn's) and prints `features_ips=`;
- training: train mode, Linear(768, K) on `pooler_output`, mean
  BCEWithLogits, zero_grad + backward + AdamW(lr, weight_decay) step, W
  untimed steps (the first one's loss printed as `first_loss=`) then S timed
  ones; prints `train_seconds_per_step=` (mean),
  `train_seconds_per_step_median=` and `train_ips=` (B / mean step).
"""

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import Dinov2Config, Dinov2Model, __version__ as transformers_version

RAD_DINO = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, mlp_ratio=4,
                patch_size=14, image_size=518, layerscale_value=1.0, layer_norm_eps=1e-6)


def save(out):
    torch.manual_seed(0)
    model = Dinov2Model(Dinov2Config(**RAD_DINO))
    model.save_pretrained(out)


def run(args):
    torch.set_num_threads(args.threads)
    inputs = load_file(args.inputs)
    x, y = inputs["pixel_values"], inputs["targets"]
    batch = x.shape[0]
    model = Dinov2Model.from_pretrained(args.dir, attn_implementation="sdpa")

    model.eval()
    times = []
    with torch.no_grad():
        first = model(pixel_values=x).pooler_output
        save_file({"pooler_output": first.contiguous()}, args.out)
        for _ in range(args.feature_batches):
            t = time.perf_counter()
            model(pixel_values=x)
            times.append(time.perf_counter() - t)
    features_ips = batch * len(times) / max(sum(times), 1e-9)

    head = torch.nn.Linear(model.config.hidden_size, y.shape[1])
    with torch.no_grad():
        head.weight.copy_(inputs["head.weight"])
        head.bias.copy_(inputs["head.bias"])
    model.train()
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)

    def step():
        logits = head(model(pixel_values=x).pooler_output)
        loss = F.binary_cross_entropy_with_logits(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    first_loss = loss = step()
    for _ in range(args.warmup - 1):
        step()
    steps = []
    for _ in range(args.steps):
        t = time.perf_counter()
        loss = step()
        steps.append(time.perf_counter() - t)
    mean = sum(steps) / max(len(steps), 1)
    print(f"threads={torch.get_num_threads()} batch={batch} torch={torch.__version__} "
          f"transformers={transformers_version} attention={model.config._attn_implementation} "
          f"last_loss={loss:.4f}")
    print(f"first_loss={first_loss:.6f}")
    print(f"features_seconds_per_batch={[round(t, 3) for t in times]}")
    print(f"features_ips={features_ips:.4f}")
    print(f"train_seconds_per_step={mean:.4f}")
    if steps:
        print(f"train_seconds_per_step_median={statistics.median(steps):.4f}")
        print(f"train_ips={batch / mean:.4f}")


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "save":
        save(sys.argv[2])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cmd", choices=["run"])
    ap.add_argument("dir")
    ap.add_argument("inputs")
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--feature-batches", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    run(ap.parse_args())


if __name__ == "__main__":
    main()
