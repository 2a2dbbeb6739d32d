"""`pretrain.checkpoint`: ADVENT's released state dicts (raw, `module.`-prefixed, without num_batches_tracked) and
our own model.pt load; anything else fails with one line naming the file and the offending keys."""

import collections

import pytest
import torch

from esl.models.checkpoints import load_pretrained, save_checkpoint
from esl.models.deeplabv2 import build_model

torch.set_num_threads(1)
KWARGS = {"layers": [1, 2, 1, 1], "width": 4, "init": None}


def advent_state_dict(num_classes, layers, width, seed=0):
    """Names and shapes of ADVENT's DeepLabv2 written out from its structure (Bottleneck expansion 4; a downsample
    branch on each stage's first block; two classifiers of four dilated 3x3 convs), random values, no
    num_batches_tracked (as saved by old PyTorch)."""
    g = torch.Generator().manual_seed(seed)
    sd = collections.OrderedDict()

    def conv(name, cout, cin, k):  # scaled by 1/sqrt(fan-in) so that the network's outputs stay finite
        sd[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=g) / (cin * k * k) ** 0.5

    def bn(name, c):
        sd[f"{name}.weight"] = torch.rand(c, generator=g) + 0.5
        sd[f"{name}.bias"] = torch.randn(c, generator=g) * 0.1
        sd[f"{name}.running_mean"] = torch.randn(c, generator=g) * 0.1
        sd[f"{name}.running_var"] = torch.rand(c, generator=g) + 0.5

    conv("conv1", width, 3, 7)
    bn("bn1", width)
    inplanes = width
    for li, blocks in enumerate(layers, start=1):
        planes = width * 2 ** (li - 1)
        for b in range(blocks):
            pre = f"layer{li}.{b}"
            cin = inplanes if b == 0 else planes * 4
            conv(f"{pre}.conv1", planes, cin, 1)
            bn(f"{pre}.bn1", planes)
            conv(f"{pre}.conv2", planes, planes, 3)
            bn(f"{pre}.bn2", planes)
            conv(f"{pre}.conv3", planes * 4, planes, 1)
            bn(f"{pre}.bn3", planes * 4)
            if b == 0:
                conv(f"{pre}.downsample.0", planes * 4, cin, 1)
                bn(f"{pre}.downsample.1", planes * 4)
        inplanes = planes * 4
    for head, cin in (("layer5", width * 16), ("layer6", width * 32)):
        for i in range(4):
            conv(f"{head}.conv2d_list.{i}", num_classes, cin, 3)
            sd[f"{head}.conv2d_list.{i}.bias"] = torch.randn(num_classes, generator=g)
    return sd


@pytest.mark.parametrize("prefix", ["", "module."])
def test_raw_advent_state_dict_loads(tmp_path, prefix):
    sd = advent_state_dict(19, KWARGS["layers"], KWARGS["width"])
    torch.save(collections.OrderedDict((prefix + k, v) for k, v in sd.items()), tmp_path / "advent.pth")
    model, kwargs = load_pretrained(tmp_path / "advent.pth", 19, KWARGS)
    assert kwargs == {"layers": [1, 2, 1, 1], "width": 4}
    state = model.state_dict()
    for k, v in sd.items():
        assert torch.equal(state[k], v), k
    assert all(int(v) == 0 for k, v in state.items() if k.endswith("num_batches_tracked"))
    # The loaded model runs and its main head is ADVENT's layer6.
    with torch.no_grad():
        _, main = model.eval()(torch.zeros(1, 3, 33, 33))
    assert main.shape[1] == 19


def test_our_model_pt_loads_with_its_own_kwargs(tmp_path):
    model = build_model(16, layers=(1, 1, 1, 1), width=4)
    save_checkpoint(tmp_path / "model.pt", model, {"layers": [1, 1, 1, 1], "width": 4})
    loaded, kwargs = load_pretrained(tmp_path / "model.pt", 16, KWARGS)  # config kwargs differ: the file's win
    assert kwargs == {"layers": [1, 1, 1, 1], "width": 4}
    assert torch.equal(loaded.layer6.conv2d_list[0].weight, model.layer6.conv2d_list[0].weight)


def test_wrong_state_dict_is_one_line_listing_missing_and_unexpected_keys(tmp_path):
    sd = advent_state_dict(19, KWARGS["layers"], KWARGS["width"])
    del sd["layer6.conv2d_list.3.bias"]
    sd["layer7.conv2d_list.0.weight"] = torch.zeros(1)
    sd["layer1.0.conv1.weight"] = torch.zeros(5, 4, 1, 1)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(ValueError) as e:
        load_pretrained(tmp_path / "bad.pth", 19, KWARGS)
    msg = str(e.value)
    assert "\n" not in msg and "bad.pth (config pretrain.checkpoint)" in msg
    assert "missing keys: layer6.conv2d_list.3.bias" in msg
    assert "unexpected keys: layer7.conv2d_list.0.weight" in msg
    assert "wrong shape keys: layer1.0.conv1.weight" in msg


def test_deeper_network_than_configured_is_refused(tmp_path):
    torch.save(advent_state_dict(19, [1, 3, 1, 1], 4), tmp_path / "deeper.pth")
    with pytest.raises(ValueError, match=r"unexpected keys: layer2\.2\.bn1\.bias"):
        load_pretrained(tmp_path / "deeper.pth", 19, KWARGS)


def test_class_count_and_unreadable_files(tmp_path):
    torch.save(advent_state_dict(16, KWARGS["layers"], KWARGS["width"]), tmp_path / "synthia.pth")
    with pytest.raises(ValueError, match="checkpoint has 16 classes, config data.num_classes is 19"):
        load_pretrained(tmp_path / "synthia.pth", 19, KWARGS)
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"junk\.pth \(config pretrain\.checkpoint\): not a readable checkpoint"):
        load_pretrained(tmp_path / "junk.pth", 19, KWARGS)
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="expected a state dict"):
        load_pretrained(tmp_path / "list.pth", 19, KWARGS)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_pretrained(tmp_path / "missing.pth", 19, KWARGS)
