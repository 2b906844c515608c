"""The peer of `cxrlearn features --model chexzero`: OpenAI CLIP's ViT-B/32
image tower (the model.py CheXzero trains and loads), eager, on the same
store and weights.

    python features_clip_torch.py save-weights WEIGHTS.pt
    python features_clip_torch.py run STORE WEIGHTS.pt BATCH FEATURES.safetensors

`save-weights` writes a seeded CLIP ViT-B/32 state dict (image and text
towers, as CheXzero's checkpoints hold them; the model is the one in
pretrain_torch.py). `run` reads the store's u8 shards, makes the 3-channel
input with CheXzero's normalisation (MIMIC-CXR mean 101.48761 / 255, std
83.43944 / 255), and times `model.visual` (eval mode, no_grad) over it in
batches after one warm-up batch: `forward_ips=`. Then it compares the
features with cxrlearn's (`features` in FEATURES.safetensors, rows in store
order): `rel_err=` is max |ours - PyTorch| / max |PyTorch|.
"""

import glob
import os
import sys
import time

import numpy as np
import torch
from safetensors.numpy import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pretrain_torch import CLIP  # noqa: E402


def model():
    return CLIP(embed=512, res=224, vlayers=12, vwidth=768, patch=32, ctx=77, vocab=49408, twidth=512, tlayers=12)


if sys.argv[1] == "save-weights":
    torch.manual_seed(0)
    torch.save(model().state_dict(), sys.argv[2])
    sys.exit(0)

store, weights, batch, ours = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
images = np.concatenate([load_file(f)["images"] for f in sorted(glob.glob(f"{store}/images-*.safetensors"))])
x = torch.from_numpy(images).float().div(255).unsqueeze(1).expand(-1, 3, -1, -1)
x = ((x - 101.48761 / 255) / (83.43944 / 255)).contiguous()
net = model()
net.load_state_dict(torch.load(weights))
net.eval()
n = x.shape[0]
with torch.no_grad():
    net.visual(x[:batch])  # warm-up, as cxrlearn's first batch is also timed after model load
    t = time.perf_counter()
    feats = torch.cat([net.visual(x[i:i + batch]) for i in range(0, n, batch)])
    fw = time.perf_counter() - t
print(f"threads={torch.get_num_threads()} images={n} torch={torch.__version__}")
print(f"forward_ips={n / fw:.2f}")
mine = load_file(ours)
order = torch.from_numpy(mine["index"])
err = (torch.from_numpy(mine["features"]) - feats[order]).abs().max() / feats.abs().max()
print(f"rel_err={err.item():.2e}")
