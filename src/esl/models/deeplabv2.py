"""DeepLabv2 as ADVENT defines it: a Caffe-style dilated ResNet with ASPP-style classifiers on layer3 and layer4.

Parameter names follow ADVENT's `advent/model/deeplabv2.py` (conv1, bn1, layer1..4, layer5 = aux classifier on layer3,
layer6 = main classifier on layer4, each classifier a `conv2d_list` of four dilated 3x3 convs whose outputs are summed),
so its released checkpoints load without conversion. Depth (`layers`) and `width` are configurable: ResNet-101 is
layers=(3, 4, 23, 3), width=64; the toy default is a much smaller network of the same shape.
"""

from __future__ import annotations

from torch import nn

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
