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

from .model import DeepLabV2, build_model, check_state_dict, load_checkpoint

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
