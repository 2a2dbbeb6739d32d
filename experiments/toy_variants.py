"""Toy designs against ESL's lift: generate a variant of the toy domain pair, pretrain, make ESL pseudo-labels from the
pretrained model and self-train from it like the workflow, next to controls trained the same way; print target-val mIoU.

Usage:

    .venv/bin/python experiments/toy_variants.py --design new_palette [--seed 0] [--pretrain-lr 0.01]
        [--pretrain-method minent] [--selftrain-lr 0.01] [--selftrain-iters 500] [--variants esl none gt_kept]
        [--workdir /tmp/toy_variants]

Everything not given comes from config/config.yaml (toy sizes, model, pretrain and selftrain parameters; ESL floor).
`--pretrain-method minent|advent` pretrains like the paper's starting points (target images, no labels, through the
adaptation term), so ESL is measured on top of an adapted model.
The stages are the library's (`generate_toy`, `train`, `entropy_map`, `class_thresholds`, `apply_thresholds`,
`evaluate_model`) without Snakemake, so one design takes about 4 min on 2 cores (pretraining is cached in --workdir).
Training progress goes to stderr, results to stdout. Variants of the target labels for self-training:

* `esl`      ESL's pseudo-labels (per-class median entropy, floored), as the workflow makes them.
* `none`     every target pixel 255: target images through the network (BatchNorm statistics), no target labels.
* `gt_kept`  the true labels of the pixels ESL keeps: its selection, right labels.
* `gt`       every target-train pixel with its true label: the ceiling.

It also prints how the source model does on target-train: accuracy, the fraction of pixels it gets wrong with
normalised entropy < 0.1 (confident errors, which ESL keeps), and what ESL keeps (coverage, precision, mean
-ln max-prob: how much gradient the kept pixels carry). docs/TOY.md ("What the studies found") quotes its output.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from esl.io.h5 import write_names
from esl.io.images import read_label
from esl.io.labels import CLASS_NAMES
from esl.io.layouts import list_samples
from esl.io.torchdata import SegmentationSet
from esl.models.adapters import adapter_params, build_adapter
from esl.models.checkpoints import initial_model
from esl.ops.entropy import entropy_map
from esl.ops.metrics import iou_from_confusion, mean_iou
from esl.ops.thresholds import METHODS, apply_thresholds, class_thresholds, method_params
from esl.stages.evaluate import evaluate_model
from esl.stages.train_loop import TrainConfig, train
from esl.toy import ToyDesign, generate_toy
from esl.toy.design import CLASSES, PerClass

DEFAULT = ToyDesign()
# The designs: the toy default with some fields replaced (esl.toy.design lists them: target palette, texture
# amplitude, noise sigma, extra blur sigma and fog, all at shift 1).
DESIGNS = {
    "default": DEFAULT,
    # no palette change (the target palette is the source's), stronger texture, noise and blur
    "no_palette_noisy": replace(DEFAULT, target_rgb=DEFAULT.source_rgb, texture=18.0, noise=18.0, blur=1.2),
    # colours no source class has (some still near another class: the sky near the source sidewalk)
    "new_palette": replace(
        DEFAULT,
        target_rgb=PerClass(
            road=(70, 92, 96),
            sidewalk=(190, 150, 190),
            building=(200, 120, 160),
            pole=(40, 90, 60),
            sign=(120, 230, 230),
            vegetation=(30, 160, 150),
            sky=(200, 200, 150),
            person=(230, 130, 20),
            car=(190, 60, 210),
        ),
    ),
    # a random search for the palette farthest (>= 65 RGB) from every other class's source and target colour
    "separated_palette": replace(
        DEFAULT,
        target_rgb=PerClass(
            road=(118, 52, 192),
            sidewalk=(218, 210, 220),
            building=(234, 108, 61),
            pole=(20, 131, 100),
            sign=(142, 198, 85),
            vegetation=(67, 41, 20),
            sky=(20, 160, 158),
            person=(128, 138, 30),
            car=(29, 20, 212),
        ),
    ),
    # the default, but cars and persons (grey and dull purple, near the sidewalk and road) in colours of their own
    "new_car_person": replace(
        DEFAULT, target_rgb=replace(DEFAULT.target_rgb, person=(230, 110, 160), car=(150, 50, 170))
    ),
    # the default plus fog: contrast lost towards a light grey, 85 % at the top row at shift 1, none at the bottom
    "fog": replace(DEFAULT, fog=0.85),
    # the default plus uniform haze (no thinning towards the bottom): a global loss of contrast
    "haze": replace(DEFAULT, fog=0.6, fog_slope=0.0),
}


def key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--design", choices=sorted(DESIGNS), default="default")
    ap.add_argument("--config", default=str(REPO / "config/config.yaml"))
    ap.add_argument("--seed", type=int, default=None, help="toy, pretrain and selftrain seed (default: the config's)")
    ap.add_argument("--pretrain-lr", type=float)
    ap.add_argument("--pretrain-method", choices=("source_only", "minent", "advent"))
    ap.add_argument("--selftrain-lr", type=float)
    ap.add_argument("--selftrain-iters", type=int)
    ap.add_argument("--variants", nargs="+", choices=("esl", "none", "gt_kept", "gt"), default=["esl", "none"])
    ap.add_argument("--workdir", default="/tmp/toy_variants")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = yaml.safe_load(Path(a.config).read_text())
    t, d = cfg["toy"], cfg["data"]
    pre, st = dict(cfg["pretrain"]), dict(cfg["selftrain"])
    if a.seed is not None:
        t["seed"] = pre["seed"] = st["seed"] = a.seed
    pre["lr"] = a.pretrain_lr or pre["lr"]
    pre["method"] = a.pretrain_method or pre.get("method", "source_only")
    st["lr"] = a.selftrain_lr or st["lr"]
    st["iters"] = a.selftrain_iters or st["iters"]
    if st.get("init") != "pretrained":
        raise SystemExit(f"{a.config}: selftrain.init must be pretrained here (the toy default), got {st.get('init')}")
    size, mean, C = tuple(d["target"]["size"]), d["mean_bgr"], d["num_classes"]
    work = Path(a.workdir)
    gen = {k: t[k] for k in ("seed", "height", "width", "n_source", "n_target_train", "n_target_val", "shift")}
    design = DESIGNS[a.design]
    root = work / f"data_{key(a.design, design.to_dict(), gen)}"
    if not (root / "manifest.csv").exists():
        generate_toy(root, **gen, design=design)
    src = list_samples("trainids", root / "source", "train")
    tgt = list_samples("trainids", root / "target", "train")
    val = list_samples("trainids", root / "target", "val")
    mk = cfg["model"]

    def evaluate(model, ref=None) -> tuple[float, str]:
        conf = evaluate_model(
            model, val, layout="trainids", size=size, mean_bgr=mean, num_classes=C, batch_size=32, log=io.StringIO()
        )
        iou = iou_from_confusion(conf)
        m = mean_iou(iou)
        lift = "" if ref is None else f"{m - ref:+6.2f}"
        return m, f"{m:6.2f} {lift:>6}  [" + " ".join(f"{100 * iou[c]:3.0f}" for c in CLASSES) + "]"

    source = SegmentationSet(src, "trainids", size, mean, C)
    model = initial_model(C, mk, pre["seed"])
    cache = work / f"pretrain_{key(root.name, mk, pre)}.pt"
    t0 = time.time()
    if cache.exists():
        model.load_state_dict(torch.load(cache, weights_only=True))
    else:
        adapter = build_adapter(pre["method"], adapter_params(pre, size, size), C, torch.device("cpu"))
        images = None if adapter is None else SegmentationSet(tgt, "trainids", size, mean, C, labels="none")
        train(model, source, images, TrainConfig.from_params(pre), torch.device("cpu"), log=sys.stderr, adapter=adapter)
        torch.save(model.state_dict(), cache)
    base, text = evaluate(model)
    print(
        f"design {a.design}, seed {t['seed']}, pretrain {pre['method']} lr {pre['lr']}, "
        f"selftrain lr {st['lr']} x {st['iters']} it"
    )
    print("target-val mIoU, lift over pretrain, IoU of " + ", ".join(CLASS_NAMES[c] for c in CLASSES))
    print(f"  pretrain   {text}   ({time.time() - t0:.0f} s)", flush=True)
    initial = {k: v.clone() for k, v in model.state_dict().items()}

    # ESL's pseudo-labels from the pretrained model, at the target training size
    model.eval()
    images = SegmentationSet(tgt, "trainids", size, mean, C, labels="none")
    label, max_prob, entropy = [], [], []
    with torch.no_grad():
        for i in range(0, len(images), 32):
            x = torch.stack([images[j][0] for j in range(i, min(i + 32, len(images)))])
            lab, mp, ent = entropy_map(model(x)[1], size)
            label.append(lab.numpy())
            max_prob.append(mp.numpy())
            entropy.append(ent.numpy())
    label, max_prob, entropy = np.concatenate(label), np.concatenate(max_prob), np.concatenate(entropy)
    rule, params = METHODS["esl"], method_params("esl", cfg["pseudo_labels"].get("esl"))  # the stage's rule and floor
    raw, _ = class_thresholds(lambda: [(entropy, label)], C, params[rule.q_key], rule.descending)
    esl = apply_thresholds(label, entropy, rule.post(raw.astype(np.float32), params), rule.keep)
    gt = np.stack([read_label("trainids", s.label, size) for s in tgt])
    valid, kept = gt != 255, esl != 255
    wrong = (label != gt) & valid
    print(
        f"  target-train: accuracy {1 - wrong.sum() / valid.sum():.3f}, wrong {wrong.sum() / valid.sum():.3f}, "
        f"confidently wrong (H < 0.1) {(wrong & (entropy < 0.1)).sum() / valid.sum():.3f}; ESL keeps "
        f"{kept[valid].mean():.3f} at precision {(esl == gt)[kept & valid].mean():.3f}, "
        f"mean -ln max-prob {(-np.log(np.maximum(max_prob[kept], 1e-12))).mean():.3f}",
        flush=True,
    )
    target_labels = {
        "esl": esl,
        "none": np.full_like(esl, 255),
        "gt_kept": np.where(kept, gt, 255).astype(np.uint8),
        "gt": gt,
    }
    for variant in a.variants:
        model.load_state_dict(initial)
        t0 = time.time()
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            path = Path(tmp) / "labels.h5"
            with h5py.File(path, "w") as f:
                f["label"] = target_labels[variant]
                write_names(f, [s.name for s in tgt])
            target = SegmentationSet(tgt, "trainids", size, mean, C, labels=str(path))
            train(model, source, target, TrainConfig.from_params(st), torch.device("cpu"), log=sys.stderr)
        print(f"  {variant:<10} {evaluate(model, base)[1]}   ({time.time() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
