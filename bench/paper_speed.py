"""Iteration speed of the paper's stages on one GPU, on random tensors at the paper's sizes (for docs/PAPER.md).

DeepLabv2-ResNet-101, batch 1 source + 1 target: AdvEnt pretraining (GTA5 1280x720 + Cityscapes 1024x512, two
discriminators), ESL self-training (the same plus target CE on pseudo-labels), and inference at 1024x512.
Prints one JSON line. Usage: python bench/paper_speed.py [iters]
"""

import json
import sys
import time

import torch
from torch.utils.data import Dataset

from esl.models.adapters import adapter_params, build_adapter
from esl.models.deeplabv2 import build_model
from esl.stages.train_loop import TrainConfig, train


class Random(Dataset):
    def __init__(self, n, size, labels, num_classes=19):
        self.n, self.size, self.labels, self.c = n, size, labels, num_classes

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        image = torch.randn(3, *self.size, generator=g) * 50
        label = torch.randint(0, self.c, self.size, generator=g) if self.labels else torch.empty(0, dtype=torch.int64)
        return image, label, i


def timed_train(iters, target_labels, device):
    model = build_model(19).to(device)
    src, tgt = (720, 1280), (512, 1024)
    p = adapter_params({"iters": 250000, "power": 0.9}, src, tgt)
    adapter = build_adapter("advent", p, 19, device)
    cfg = TrainConfig(iters=3, batch_size=1, lr=2.5e-4, poly_iters=250000)
    train(model, Random(8, src, True), Random(8, tgt, target_labels), cfg, device, adapter=adapter)  # warm-up
    torch.cuda.synchronize()
    t = time.perf_counter()
    cfg = TrainConfig(iters=3 + iters, batch_size=1, lr=2.5e-4, poly_iters=250000)
    train(model, Random(64, src, True), Random(64, tgt, target_labels), cfg, device, adapter=adapter)
    torch.cuda.synchronize()
    return (3 + iters) / (time.perf_counter() - t)


@torch.no_grad()
def timed_infer(n, device):
    model = build_model(19).to(device).eval()
    x = torch.randn(1, 3, 512, 1024, device=device)
    for _ in range(3):
        model(x)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        model(x)
    torch.cuda.synchronize()
    return n / (time.perf_counter() - t)


if __name__ == "__main__":
    iters = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    out = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "advent_pretrain_it_per_s": round(timed_train(iters, False, dev), 3),
        "esl_selftrain_adversarial_it_per_s": round(timed_train(iters, True, dev), 3),
        "infer_1024x512_img_per_s": round(timed_infer(50, dev), 2),
        "max_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }
    print(json.dumps(out))
