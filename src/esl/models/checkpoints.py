"""A given pretrained segmentation model (config `pretrain.checkpoint`): our `model.pt` or a raw ADVENT state dict.

ADVENT's released models (`gta2cityscapes_advent.pth`, `synthia2cityscapes_advent.pth`, ...) are plain state dicts
of its DeepLabv2 (`conv1.weight`, `bn1.*`, `layer1.0.conv1.weight` ... `layer5.conv2d_list.*` (aux classifier),
`layer6.conv2d_list.*` (main classifier)). Variants seen in the wild are accepted too: keys prefixed `module.` (saved
from `nn.DataParallel`/DDP), a dict wrapping the weights under `state_dict`, and BatchNorm buffers without
`num_batches_tracked` (older PyTorch; the counter is unused by frozen-statistics evaluation and is set to 0).
Everything else must match the model built from the config exactly, or the error lists the missing, unexpected and
mis-shaped keys.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from esl.io.files import atomic_path
from esl.models.deeplabv2 import DeepLabV2, build_model


def save_checkpoint(path, model: DeepLabV2, model_kwargs: dict, provenance: dict | None = None, **extra) -> None:
    """Write `model.pt` atomically: state dict, the kwargs that rebuild the model, and provenance."""
    payload = {
        "state_dict": model.state_dict(),
        "model": dict(model_kwargs),
        "num_classes": model.num_classes,
        "provenance": provenance or {},
        **extra,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path, num_classes: int | None = None, map_location="cpu") -> tuple[DeepLabV2, dict]:
    """Rebuild a model from `model.pt`; a different class count than `num_classes` is an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad checkpoint
        raise ValueError(
            f"{path}: not a readable checkpoint ({type(e).__name__}; corrupt, truncated or not a torch file)"
        ) from None
    if not isinstance(payload, dict) or "state_dict" not in payload or "model" not in payload:
        raise ValueError(f"{path}: expected a dict with 'state_dict' and 'model' (an esl checkpoint)")
    ckpt_classes = int(payload["num_classes"])
    if num_classes is not None and ckpt_classes != num_classes:
        raise ValueError(f"{path}: checkpoint has {ckpt_classes} classes, config data.num_classes is {num_classes}")
    model = build_model(ckpt_classes, **payload["model"])
    load_state_dict_strict(model, payload["state_dict"], path)
    return model, payload


def load_state_dict_strict(model: nn.Module, state_dict: dict, source="state dict") -> None:
    """Load with a readable one-line error listing missing/unexpected/mis-shaped keys."""
    check_state_dict(model.state_dict(), state_dict, source)
    model.load_state_dict(state_dict)


def check_state_dict(own: dict, state_dict: dict, source="state dict") -> None:
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(k for k in set(own) & set(state_dict) if tuple(own[k].shape) != tuple(state_dict[k].shape))
    if missing or unexpected or shapes:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
            if keys:
                more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
                parts.append(f"{what} keys: {', '.join(keys[:5])}{more}")
        raise ValueError(f"{source}: does not fit the model; " + "; ".join(parts))


def load_imagenet_init(model: DeepLabV2, path) -> None:
    """Load ADVENT's `DeepLab_resnet_pretrained_imagenet.pth`: keys prefixed `Scale.`, its classifier `layer5` skipped.

    Plain backbone state dicts (no prefix) load too. The classifiers keep their fresh initialisation. As in ADVENT's
    train.py (which copies the file's entries into the model's own state dict), `num_batches_tracked` buffers may be
    absent (the released file, a 2017 Caffe conversion, predates them): the model keeps its own. Any other backbone key
    missing, unexpected or mis-shaped is an error naming the file and the keys."""
    path = Path(path)
    where = f"{path} (config model.init)"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: initialisation weights not found (config model.init)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file; torch's own message is many lines
        raise ValueError(
            f"{where}: not a readable torch state dict ({type(e).__name__}; corrupt or not a torch file)"
        ) from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{where}: not a state dict (holds a {type(state).__name__})")
    bad = sorted(str(k) for k, v in state.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise ValueError(f"{where}: not a state dict of tensors (entries {', '.join(bad[:5])} are not tensors)")
    own = model.state_dict()
    loaded = {}
    for key, value in state.items():
        key = key[len("Scale.") :] if key.startswith("Scale.") else key
        if key.startswith(("layer5.", "layer6.")):
            continue  # classifiers: a different task and class count
        loaded[key] = value
    backbone = {k: v for k, v in own.items() if not k.startswith(("layer5.", "layer6."))}
    for key in backbone:
        if key.endswith(".num_batches_tracked") and key not in loaded:
            loaded[key] = backbone[key]  # absent from old files: keep the model's own counter
    check_state_dict(backbone, loaded, where)
    own.update(loaded)
    model.load_state_dict(own)


def initial_model(num_classes: int, model_kwargs: dict, seed: int) -> DeepLabV2:
    """The common starting point of pretraining and (by default) self-training: a seeded random init, then the
    backbone weights of `model_kwargs['init']` when given."""
    kwargs = {k: v for k, v in model_kwargs.items() if k != "init"}
    torch.manual_seed(seed)
    model = build_model(num_classes, **kwargs)
    if model_kwargs.get("init"):
        load_imagenet_init(model, model_kwargs["init"])
    return model


PREFIXES = ("module.",)


def normalise_state_dict(state: dict) -> dict:
    """Strip a `module.` prefix that every key carries; keep the keys otherwise."""
    out = dict(state)
    for prefix in PREFIXES:
        if out and all(k.startswith(prefix) for k in out):
            out = {k[len(prefix) :]: v for k, v in out.items()}
    return out


def load_state_dict_into(model: DeepLabV2, state: dict, source: str) -> None:
    """Load ADVENT-named weights; missing `num_batches_tracked` buffers are taken as 0, anything else must fit."""
    state = normalise_state_dict(state)
    own = model.state_dict()
    for key, value in own.items():
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    check_state_dict(own, state, source)
    model.load_state_dict(state)


def load_pretrained(
    path, num_classes: int, model_kwargs: dict, key: str = "config pretrain.checkpoint"
) -> tuple[DeepLabV2, dict]:
    """(model, model kwargs) from `path`: an esl `model.pt` (its own kwargs) or a raw ADVENT state dict (the model
    is built from `model_kwargs`, i.e. config `model.layers`/`model.width`, with `num_classes` classes). `key` names
    the config key in error messages."""
    path = Path(path)
    where = f"{path} ({key})"
    if not path.is_file():
        raise FileNotFoundError(f"{where}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad checkpoint
        raise ValueError(
            f"{where}: not a readable checkpoint ({type(e).__name__}; corrupt, truncated or not a torch file)"
        ) from None
    if not isinstance(payload, dict):
        raise ValueError(f"{where}: expected a state dict or an esl checkpoint, got {type(payload).__name__}")
    if "state_dict" in payload and "model" in payload:  # ours
        model, payload = load_checkpoint(path, num_classes=num_classes)
        return model, dict(payload["model"])
    state = payload["state_dict"] if isinstance(payload.get("state_dict"), dict) else payload
    if not state or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise ValueError(f"{where}: not a state dict (expected parameter names mapped to tensors)")
    kwargs = {k: v for k, v in model_kwargs.items() if k != "init"}
    classes = normalise_state_dict(state).get("layer6.conv2d_list.0.weight")
    if classes is not None and classes.shape[0] != num_classes:
        raise ValueError(
            f"{where}: checkpoint has {classes.shape[0]} classes, config data.num_classes is {num_classes}"
        )
    model = build_model(num_classes, **kwargs)
    load_state_dict_into(model, state, where)
    return model, kwargs
