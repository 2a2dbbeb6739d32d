"""DeepLabv2: output shapes and stride, ADVENT parameter names, checkpoints and their error messages."""

import pytest
import torch

from esl.model import (
    RESNET101,
    build_model,
    initial_model,
    load_checkpoint,
    load_imagenet_init,
    load_state_dict_strict,
    output_size,
    save_checkpoint,
)

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
