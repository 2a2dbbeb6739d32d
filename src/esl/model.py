"""DeepLabv2 as ADVENT defines it: a Caffe-style dilated ResNet with ASPP-style classifiers on layer3 and layer4.

Parameter names follow ADVENT's `advent/model/deeplabv2.py` (conv1, bn1, layer1..4, layer5 = aux classifier on layer3,
layer6 = main classifier on layer4, each classifier a `conv2d_list` of four dilated 3x3 convs whose outputs are summed),
so its released checkpoints load without conversion. Depth (`layers`) and `width` are configurable: ResNet-101 is
layers=(3, 4, 23, 3), width=64; the toy default is a much smaller network of the same shape.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .h5io import atomic_path

RESNET101 = (3, 4, 23, 3)
ASPP_DILATIONS = (6, 12, 18, 24)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1, downsample=None):
        super().__init__()
        # Caffe-style: the stride sits on the first 1x1 conv, not on the 3x3.
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ClassifierModule(nn.Module):
    """Four parallel dilated 3x3 convs whose outputs are summed (DeepLabv2's ASPP)."""

    def __init__(self, inplanes: int, num_classes: int, dilations=ASPP_DILATIONS):
        super().__init__()
        self.conv2d_list = nn.ModuleList(
            nn.Conv2d(inplanes, num_classes, 3, padding=d, dilation=d, bias=True) for d in dilations
        )
        for conv in self.conv2d_list:
            nn.init.normal_(conv.weight, 0.0, 0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x):
        out = self.conv2d_list[0](x)
        for conv in self.conv2d_list[1:]:
            out = out + conv(x)
        return out


class DeepLabV2(nn.Module):
    """Returns (aux, main) logits at the network's native resolution (output stride 8)."""

    def __init__(self, num_classes: int, layers=RESNET101, width: int = 64, multi_level: bool = True):
        super().__init__()
        self.num_classes = num_classes
        self.multi_level = multi_level
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], dilation=2)
        self.layer4 = self._make_layer(width * 8, layers[3], dilation=4)
        if multi_level:
            self.layer5 = ClassifierModule(width * 16, num_classes)
        self.layer6 = ClassifierModule(width * 32, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and not any(m is c for c in self.classifier_convs()):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        freeze_batchnorm_affine(self)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * 4 or dilation in (2, 4):
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False), nn.BatchNorm2d(planes * 4)
            )
        mods = [Bottleneck(self.inplanes, planes, stride, dilation, downsample)]
        self.inplanes = planes * 4
        mods += [Bottleneck(self.inplanes, planes, dilation=dilation) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def classifier_convs(self):
        heads = [self.layer6] + ([self.layer5] if self.multi_level else [])
        return [c for h in heads for c in h.conv2d_list]

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        aux = self.layer5(x) if self.multi_level else None
        main = self.layer6(self.layer4(x))
        return aux, main

    def param_groups(self, lr: float, classifier_mult: float = 10.0):
        """Backbone at `lr`, classifiers at `classifier_mult * lr` (as ADVENT's optimiser does)."""
        head_ids = {id(p) for c in self.classifier_convs() for p in c.parameters()}
        backbone = [p for p in self.parameters() if p.requires_grad and id(p) not in head_ids]
        heads = [p for p in self.parameters() if p.requires_grad and id(p) in head_ids]
        return [
            {"params": backbone, "lr": lr, "initial_lr": lr},
            {"params": heads, "lr": lr * classifier_mult, "initial_lr": lr * classifier_mult},
        ]


def freeze_batchnorm_affine(model: nn.Module) -> None:
    """ADVENT freezes BatchNorm's affine parameters (its statistics still update in train mode)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            for p in m.parameters():
                p.requires_grad = False


def build_model(num_classes: int, layers=RESNET101, width: int = 64, multi_level: bool = True) -> DeepLabV2:
    return DeepLabV2(num_classes, layers=tuple(layers), width=width, multi_level=multi_level)


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


def output_size(height: int, width: int) -> tuple[int, int]:
    """Native output size of DeepLabV2 for an input size: conv1 (stride 2), ceil-mode max-pool (stride 2), layer2's 1x1
    conv (stride 2); layer3/4 keep the size (dilation instead of stride)."""

    def one(n: int) -> int:
        n = (n + 2 * 3 - 7) // 2 + 1
        pooled = -(-(n + 2 * 1 - 3) // 2) + 1
        if (pooled - 1) * 2 >= n + 1:  # the last window must start inside the input or its left padding
            pooled -= 1
        return (pooled - 1) // 2 + 1

    return one(height), one(width)


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
