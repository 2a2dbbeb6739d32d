"""DeepLabv2: output shapes and stride, ADVENT parameter names, checkpoints and their error messages."""

import pytest
import torch

from esl.models.checkpoints import (
    initial_model,
    load_checkpoint,
    load_imagenet_init,
    load_state_dict_strict,
    save_checkpoint,
)
from esl.models.deeplabv2 import RESNET101, build_model, output_size

TINY = dict(layers=(1, 1, 1, 1), width=8)


@pytest.mark.parametrize("hw", [(64, 128), (65, 129), (33, 47), (96, 40)])
def test_output_shapes_and_native_size(hw):
    model = build_model(5, **TINY).eval()
    with torch.no_grad():
        aux, main = model(torch.zeros(2, 3, *hw))
    # Output stride 8: conv1 /2, ceil-mode max-pool /2, layer2 /2; computed by hand with the conv/pool formulas.
    h, w = hw
    expected = []
    for n in (h, w):
        n = (n + 6 - 7) // 2 + 1
        p = -(-(n + 2 - 3) // 2) + 1
        if (p - 1) * 2 >= n + 1:
            p -= 1
        expected.append((p - 1) // 2 + 1)
    assert main.shape == (2, 5, *expected)
    assert aux.shape == main.shape
    assert output_size(*hw) == tuple(expected)
    assert abs(h / expected[0] - 8) < 8 * 0.3


def test_512x1024_gives_the_known_65x129():
    assert output_size(512, 1024) == (65, 129)


def advent_resnet101_keys():
    """Key names of ADVENT's DeepLabv2 ResNet-101, written out from its structure."""
    keys = {"conv1.weight"} | {f"bn1.{s}" for s in ("weight", "bias", "running_mean", "running_var")}
    for li, blocks in enumerate(RESNET101, start=1):
        for b in range(blocks):
            pre = f"layer{li}.{b}"
            for c in (1, 2, 3):
                keys.add(f"{pre}.conv{c}.weight")
                keys |= {f"{pre}.bn{c}.{s}" for s in ("weight", "bias", "running_mean", "running_var")}
            if b == 0:
                keys.add(f"{pre}.downsample.0.weight")
                keys |= {f"{pre}.downsample.1.{s}" for s in ("weight", "bias", "running_mean", "running_var")}
    for head in ("layer5", "layer6"):
        for i in range(4):
            keys |= {f"{head}.conv2d_list.{i}.weight", f"{head}.conv2d_list.{i}.bias"}
    return keys


def test_resnet101_has_advent_names_and_shapes():
    model = build_model(19)
    state = model.state_dict()
    names = {k for k in state if not k.endswith("num_batches_tracked")}
    assert names == advent_resnet101_keys()
    assert state["layer5.conv2d_list.0.weight"].shape == (19, 1024, 3, 3)
    assert state["layer6.conv2d_list.3.weight"].shape == (19, 2048, 3, 3)
    assert state["layer4.0.conv1.weight"].shape == (512, 1024, 1, 1)
    assert model.layer6.conv2d_list[3].dilation == (24, 24)
    assert model.layer3[0].conv2.dilation == (2, 2) and model.layer4[0].conv2.dilation == (4, 4)
    assert model.layer2[0].conv1.stride == (2, 2) and model.layer2[0].conv2.stride == (1, 1)
    assert model.maxpool.ceil_mode


def test_batchnorm_affine_frozen_and_classifier_lr_groups():
    model = build_model(4, **TINY)
    bn = [p for n, p in model.named_parameters() if ".bn" in n or n.startswith("bn1") or "downsample.1" in n]
    assert bn and not any(p.requires_grad for p in bn)
    groups = model.param_groups(0.1, 10.0)
    assert groups[1]["lr"] == pytest.approx(1.0)
    head = {id(p) for p in groups[1]["params"]}
    assert head == {id(p) for n, p in model.named_parameters() if n.startswith(("layer5", "layer6"))}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(trainable)


def test_checkpoint_round_trip(tmp_path):
    model = initial_model(6, dict(TINY, init=None), seed=3)
    save_checkpoint(tmp_path / "model.pt", model, TINY, {"config": {"a": 1}})
    loaded, payload = load_checkpoint(tmp_path / "model.pt", num_classes=6)
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    assert payload["provenance"]["config"] == {"a": 1}
    assert not list(tmp_path.glob("*.tmp-*"))


def test_checkpoint_with_other_class_count_is_one_clear_line(tmp_path):
    save_checkpoint(tmp_path / "model.pt", build_model(6, **TINY), TINY)
    with pytest.raises(ValueError, match=r"model\.pt: checkpoint has 6 classes, config data.num_classes is 19") as e:
        load_checkpoint(tmp_path / "model.pt", num_classes=19)
    assert "\n" not in str(e.value)


def test_unreadable_checkpoint(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="model.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "model.pt")


def test_wrong_state_dict_lists_missing_and_unexpected_keys():
    model = build_model(3, **TINY)
    state = model.state_dict()
    state["layer7.weight"] = torch.zeros(1)
    del state["layer6.conv2d_list.0.bias"]
    with pytest.raises(ValueError) as e:
        load_state_dict_strict(model, state, "weights.pth")
    msg = str(e.value)
    assert "missing keys: layer6.conv2d_list.0.bias" in msg and "unexpected keys: layer7.weight" in msg


def test_imagenet_init_with_scale_prefix_skips_its_classifier(tmp_path):
    donor = build_model(3, **TINY)
    state = {f"Scale.{k}": v + 1.0 if v.is_floating_point() else v for k, v in donor.state_dict().items()}
    state = {k: v for k, v in state.items() if not k.startswith("Scale.layer6")}
    state["Scale.layer5.conv2d_list.0.weight"] = torch.zeros(21, 32, 3, 3)  # other class count: must be skipped
    torch.save(state, tmp_path / "imagenet.pth")
    model = build_model(3, **TINY)
    heads_before = model.layer6.conv2d_list[0].weight.clone()
    load_imagenet_init(model, tmp_path / "imagenet.pth")
    assert torch.equal(model.conv1.weight, donor.conv1.weight + 1.0)
    assert torch.equal(model.layer6.conv2d_list[0].weight, heads_before)


RELEASED_LAYERS = [1, 2, 1, 1]


def released_imagenet_file(path, edit=None):
    """Written like ADVENT's released `DeepLab_resnet_pretrained_imagenet.pth` (a 2017 Caffe conversion): every key
    prefixed `Scale.`, no `num_batches_tracked`, one classifier `layer5` for another class count (21)."""
    from test_pretrained import advent_state_dict

    sd = advent_state_dict(21, RELEASED_LAYERS, 4, seed=3)
    state = {f"Scale.{k}": v for k, v in sd.items() if not k.startswith("layer6.")}
    if edit:
        edit(state)
    torch.save(state, path)
    return path


def test_imagenet_init_as_released_loads_without_num_batches_tracked(tmp_path):
    path = released_imagenet_file(tmp_path / "DeepLab_resnet_pretrained_imagenet.pth")
    torch.manual_seed(0)
    model = build_model(19, layers=RELEASED_LAYERS, width=4)
    for name, buf in model.named_buffers():
        if name.endswith("num_batches_tracked"):
            buf.fill_(7)  # distinct from a fresh 0: the model's own values must stay
    before = {k: v.clone() for k, v in model.state_dict().items()}
    load_imagenet_init(model, path)
    after = model.state_dict()
    file = torch.load(path, map_location="cpu", weights_only=True)  # read back independently of the loader
    assert not any(k.endswith("num_batches_tracked") for k in file)
    backbone = {k: v for k, v in file.items() if not k.startswith("Scale.layer5.")}
    for key, value in backbone.items():
        assert torch.equal(after[key.removeprefix("Scale.")], value), key
    own_backbone = {
        k for k in after if not k.startswith(("layer5.", "layer6.")) and not k.endswith("num_batches_tracked")
    }
    assert own_backbone == {k.removeprefix("Scale.") for k in backbone}  # every backbone tensor came from the file
    for key in after:
        if key.startswith(("layer5.", "layer6.")):
            assert torch.equal(after[key], before[key]), key  # classifiers: their fresh init, not the file's 21-class
        if key.endswith("num_batches_tracked"):
            assert int(after[key]) == 7, key
    assert after["layer5.conv2d_list.0.weight"].shape[0] == 19


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("Scale.layer3.0.bn2.running_var"), "missing keys: layer3.0.bn2.running_var"),
        (
            lambda s: s.__setitem__("Scale.layer2.1.conv2.weight", torch.zeros(8, 8, 1, 1)),
            "wrong shape keys: layer2.1.conv2.weight",
        ),
        (lambda s: s.__setitem__("Scale.layer4.0.extra", torch.zeros(1)), "unexpected keys: layer4.0.extra"),
    ],
    ids=["missing", "mis-shaped", "unexpected"],
)
def test_imagenet_init_as_released_still_refuses_a_wrong_backbone(tmp_path, edit, message):
    path = released_imagenet_file(tmp_path / "imagenet.pth", edit)
    model = build_model(19, layers=RELEASED_LAYERS, width=4)
    with pytest.raises(ValueError) as e:
        load_imagenet_init(model, path)
    msg = str(e.value)
    assert message in msg and str(path) in msg and "config model.init" in msg and "\n" not in msg, msg
    assert "num_batches_tracked" not in msg


@pytest.mark.parametrize("content", ["garbage", "truncated", "not a dict"])
def test_imagenet_init_unreadable_file_is_one_line(tmp_path, content):
    path = tmp_path / "imagenet.pth"
    if content == "garbage":
        path.write_bytes(b"<html>404 Not Found</html>")
    elif content == "truncated":
        released_imagenet_file(path)
        path.write_bytes(path.read_bytes()[:2000])
    else:
        torch.save([torch.zeros(1)], path)
    with pytest.raises(ValueError) as e:
        load_imagenet_init(build_model(19, layers=RELEASED_LAYERS, width=4), path)
    msg = str(e.value)
    assert str(path) in msg and "config model.init" in msg and "\n" not in msg, msg
    assert "weights_only" not in msg, msg
