"""The peer of cxrlearn pretraining: one training step of the reference PyTorch
implementations, on random inputs of the same shapes (data loading excluded,
which only favours this side).

    python pretrain_torch.py moco --arch resnet50 --size 224 --batch-size 32 --queue 4096
        [--dim 128] [--ghost-batches 2] [--steps 8] [--warmup 2]
    python pretrain_torch.py clip --size 224 --batch-size 16 --vocab 8192 --context 77
        [--steps 8] [--warmup 2]

moco: MoCo v2 as facebookresearch/moco's builder.py (which MoCo-CXR uses): a
torchvision ResNet with its fc replaced by the MLP head (F -> F -> dim), a
momentum key encoder updated before the key forward, keys computed without
gradient in `--ghost-batches` chunks (cxrlearn's single-device shuffle-BN
stand-in computes its keys the same way), logits [q.k, q.queue] / 0.2,
cross-entropy, AdamW, enqueue.

clip: OpenAI CLIP's model.py at ViT-B/32 (vision width 768, 12 layers, patch
32; text width 512, 12 layers, 8 heads, causal mask, EOT pooling; embedding
512), the symmetric InfoNCE with the learnable logit scale (CheXzero's
run_train.py), AdamW.

--best is PyTorch's best effort for CPU training: AdamW(foreach=True) (the
multi-tensor update PyTorch picks by itself only on CUDA) and, for MoCo, both
encoders and the views in channels-last order and the key encoder's EMA as
one torch._foreach_lerp_.

After --warmup untimed steps, --steps steps are timed. Prints
torch_seconds_per_step= (mean) and torch_seconds_per_step_median=.
"""

import argparse
import copy
import math
import statistics
import time
from collections import OrderedDict

import torch
import torch.nn.functional as F
import torchvision
from torch import nn


class LayerNorm(nn.LayerNorm):
    def forward(self, x):
        return super().forward(x.type(torch.float32)).type(x.dtype)


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, d_model, n_head, attn_mask=None):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_head)
        self.ln_1 = LayerNorm(d_model)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(d_model, d_model * 4)), ("gelu", QuickGELU()),
                                              ("c_proj", nn.Linear(d_model * 4, d_model))]))
        self.ln_2 = LayerNorm(d_model)
        self.attn_mask = attn_mask

    def forward(self, x):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=self.attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


class ClipTransformer(nn.Module):
    def __init__(self, width, layers, heads, attn_mask=None):
        super().__init__()
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads, attn_mask) for _ in range(layers)])

    def forward(self, x):
        return self.resblocks(x)


class ClipVision(nn.Module):
    def __init__(self, res, patch, width, layers, heads, out):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((res // patch) ** 2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = ClipTransformer(width, layers, heads)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, out))

    def forward(self, x):
        x = self.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = self.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1])
        x = torch.cat([cls, x], dim=1) + self.positional_embedding
        x = self.ln_pre(x).permute(1, 0, 2)
        x = self.transformer(x).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj


class CLIP(nn.Module):
    def __init__(self, embed, res, vlayers, vwidth, patch, ctx, vocab, twidth, tlayers):
        super().__init__()
        self.visual = ClipVision(res, patch, vwidth, vlayers, vwidth // 64, embed)
        mask = torch.empty(ctx, ctx).fill_(float("-inf")).triu_(1)
        self.transformer = ClipTransformer(twidth, tlayers, twidth // 64, mask)
        self.token_embedding = nn.Embedding(vocab, twidth)
        self.positional_embedding = nn.Parameter(torch.randn(ctx, twidth) * 0.01)
        self.ln_final = LayerNorm(twidth)
        self.text_projection = nn.Parameter(torch.randn(twidth, embed) * twidth ** -0.5)
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))

    def encode_text(self, text):
        x = self.token_embedding(text) + self.positional_embedding
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ self.text_projection


def moco_step_fn(a):
    enc_q = getattr(torchvision.models, a.arch)(weights=None)
    f = enc_q.fc.in_features
    enc_q.fc = nn.Sequential(nn.Linear(f, f), nn.ReLU(), nn.Linear(f, a.dim))
    enc_k = copy.deepcopy(enc_q)
    for p in enc_k.parameters():
        p.requires_grad = False
    queue = F.normalize(torch.randn(a.queue, a.dim), dim=1)
    ptr = [0]
    opt = torch.optim.AdamW(enc_q.parameters(), lr=1e-4, weight_decay=1e-4, foreach=True if a.best else None)
    enc_q.train()
    enc_k.train()
    xq = torch.randn(a.batch_size, 3, a.size, a.size)
    xk = torch.randn(a.batch_size, 3, a.size, a.size)
    if a.best:
        enc_q.to(memory_format=torch.channels_last)
        enc_k.to(memory_format=torch.channels_last)
        xq = xq.contiguous(memory_format=torch.channels_last)
        xk = xk.contiguous(memory_format=torch.channels_last)
    params_q, params_k = list(enc_q.parameters()), list(enc_k.parameters())

    def step():
        q = F.normalize(enc_q(xq), dim=1)
        with torch.no_grad():
            if a.best:
                torch._foreach_lerp_(params_k, params_q, 0.001)
            else:
                for pq, pk in zip(params_q, params_k):
                    pk.mul_(0.999).add_(pq.detach(), alpha=0.001)
            perm = torch.randperm(a.batch_size)
            k = torch.cat([enc_k(c) for c in xk[perm].chunk(a.ghost_batches)])
            k = F.normalize(k, dim=1)[torch.argsort(perm)]
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.t()], 1) / 0.2
        loss = F.cross_entropy(logits, torch.zeros(a.batch_size, dtype=torch.long))
        opt.zero_grad()
        loss.backward()
        opt.step()
        queue[ptr[0]:ptr[0] + a.batch_size] = k
        ptr[0] = (ptr[0] + a.batch_size) % a.queue

    return step


def clip_step_fn(a):
    model = CLIP(embed=512, res=a.size, vlayers=12, vwidth=768, patch=32, ctx=a.context, vocab=a.vocab,
                 twidth=512, tlayers=12)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4, foreach=True if a.best else None)
    image = torch.randn(a.batch_size, 3, a.size, a.size)
    g = torch.Generator().manual_seed(0)
    text = torch.randint(3, a.vocab - 1, (a.batch_size, a.context), generator=g)
    lengths = torch.randint(8, a.context, (a.batch_size,), generator=g)
    for i, n in enumerate(lengths.tolist()):
        text[i, n] = a.vocab - 1  # EOT, the largest id
        text[i, n + 1:] = 0
    target = torch.arange(a.batch_size)

    def step():
        img = F.normalize(model.visual(image), dim=1)
        txt = F.normalize(model.encode_text(text), dim=1)
        logits = model.logit_scale.exp() * img @ txt.t()
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def main():
    p = argparse.ArgumentParser()
    p.add_argument("method", choices=["moco", "clip"])
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--queue", type=int, default=4096)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--ghost-batches", type=int, default=2)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--context", type=int, default=77)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--best", action="store_true", help="foreach AdamW; MoCo: channels-last, foreach EMA")
    a = p.parse_args()
    torch.manual_seed(0)
    step = moco_step_fn(a) if a.method == "moco" else clip_step_fn(a)
    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    print(f"torch_seconds_per_step={sum(times) / len(times):.6f}")
    print(f"torch_seconds_per_step_median={statistics.median(times):.6f}")
    print(f"torch_threads={torch.get_num_threads()} torch_version={torch.__version__} best={a.best}")


if __name__ == "__main__":
    main()
