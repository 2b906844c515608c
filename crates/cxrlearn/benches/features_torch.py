"""The peers of `cxrlearn features`, on the same store and weights.

    python features_torch.py save-weights WEIGHTS.pt
    python features_torch.py run STORE WEIGHTS.pt BATCH

`save-weights` writes a seeded torchvision ResNet-50 state dict. `run` reads the
store's u8 shard, builds the original cxrlearn's in-memory float tensor dataset
(3 channels, CLIP statistics), and times (1) the original's path, a DataLoader
over a TensorDataset, and (2) bare model forward over the same tensor, both in
eval mode under no_grad. Prints `dataloader_ips=` and `forward_ips=`.

Then PyTorch's best effort on the CPU, what a user gets by asking for it:
(3) channels-last model and input under `torch.compile` (inductor, default
mode; it folds batch norm and fuses with oneDNN), fp32, `compile_ips=`; and
(4) the same under bf16 autocast, `compile_bf16_ips=`. Compilation runs on
a warm-up batch of the timed batch size and is not timed (`compile_s=`).
Each peer's features are compared with the eager ones (`*_rel_err=`).
"""

import glob
import sys
import time

import numpy as np
import torch
import torchvision
from safetensors.numpy import load_file
from torch.utils.data import DataLoader, TensorDataset


def model():
    m = torchvision.models.resnet50(weights=None)
    m.fc = torch.nn.Identity()
    return m


if sys.argv[1] == "save-weights":
    torch.manual_seed(0)
    torch.save(model().state_dict(), sys.argv[2])
    sys.exit(0)

store, weights, batch = sys.argv[2], sys.argv[3], int(sys.argv[4])
images = np.concatenate([load_file(f)["images"] for f in sorted(glob.glob(f"{store}/images-*.safetensors"))])
x = torch.from_numpy(images).float().div(255).unsqueeze(1).expand(-1, 3, -1, -1)
mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
x = ((x - mean) / std).contiguous()
net = model()
net.load_state_dict(torch.load(weights), strict=False)
net.eval()
n = x.shape[0]
with torch.no_grad():
    net(x[:2])  # warm-up, as cxrlearn's first batch is also timed after model load
    t = time.perf_counter()
    feats = [net(b) for (b,) in DataLoader(TensorDataset(x), batch_size=batch, shuffle=False)]
    dl = time.perf_counter() - t
    t = time.perf_counter()
    feats2 = [net(x[i:i + batch]) for i in range(0, n, batch)]
    fw = time.perf_counter() - t
print(f"threads={torch.get_num_threads()} images={n}")
print(f"dataloader_ips={n / dl:.2f}")
print(f"forward_ips={n / fw:.2f}")
sys.stdout.flush()

reference = torch.cat(feats2)
xcl = x.contiguous(memory_format=torch.channels_last)
fast = net.to(memory_format=torch.channels_last)
compiled = torch.compile(fast)


def best_effort(name, bf16):
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        t = time.perf_counter()
        compiled(xcl[:batch])  # compiles for the full batch shape
        if n % batch:
            compiled(xcl[n - n % batch:])  # and the last, shorter one
        print(f"{name}_compile_s={time.perf_counter() - t:.1f}")
        t = time.perf_counter()
        out = [compiled(xcl[i:i + batch]) for i in range(0, n, batch)]
        dt = time.perf_counter() - t
    out = torch.cat(out).float()
    err = ((out - reference).abs().max() / reference.abs().max()).item()
    print(f"{name}_ips={n / dt:.2f}")
    print(f"{name}_rel_err={err:.2e}")
    sys.stdout.flush()


best_effort("compile", False)
best_effort("compile_bf16", True)
