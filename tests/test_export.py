"""Rule `export` on miniature splits: zip entries named as the servers expect, one 8-bit PNG per image at the image's
own size, label ids from cityscapesScripts' table (or trainIds for ACDC), the values an independent computation
gives for a model with known outputs, the refusal of a model with another class count, and the DAG: `export` is
planned on request and `all` leaves it out."""

import fnmatch
import io
import json
import zipfile

import cv2
import numpy as np
import pytest
import torch
import yaml
from conftest import DEVICES, REPO, TINY, job_name, write_config
from PIL import Image
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, Quietness, ResourceSettings
from torch import nn

from esl.io.images import read_image
from esl.io.labels import CITYSCAPES_ID_TO_TRAINID, TRAINID_TO_CITYSCAPES_ID, to_cityscapes_ids
from esl.io.layouts import Sample, list_samples, read_index, write_index
from esl.io.provenance import provenance
from esl.models.checkpoints import save_checkpoint
from esl.models.deeplabv2 import build_model
from esl.stages.export import Params, entry_names, export_predictions, run

# cityscapesScripts 2.2.4, helpers/labels.py: (trainId, id) of the 19 classes with a trainId other than 255
OFFICIAL = {
    0: 7,  # road
    1: 8,  # sidewalk
    2: 11,  # building
    3: 12,  # wall
    4: 13,  # fence
    5: 17,  # pole
    6: 19,  # traffic light
    7: 20,  # traffic sign
    8: 21,  # vegetation
    9: 22,  # terrain
    10: 23,  # sky
    11: 24,  # person
    12: 25,  # rider
    13: 26,  # car
    14: 27,  # truck
    15: 28,  # bus
    16: 31,  # train
    17: 32,  # motorcycle
    18: 33,  # bicycle
}
SIZE = (32, 64)  # the network's input size; the images are other sizes
MEAN = [104.0, 117.0, 123.0]
TARGET = {"layout": "cityscapes", "size": list(SIZE), "mean_bgr": MEAN, "num_classes": 19}
# (city, seq_frame, height, width): sizes differ, one of them is the input size
CITYSCAPES = (
    ("berlin", "000000_000019", 40, 80),
    ("bonn", "000001_000019", 32, 64),
    ("berlin", "000002_000019", 24, 56),
)


def write_image(path, h, w, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def cityscapes_test(root):
    """A Cityscapes test split without labels: leftImg8bit/test/{city}/{city}_{seq}_{frame}_leftImg8bit.png."""
    for i, (city, n, h, w) in enumerate(CITYSCAPES):
        write_image(root / "leftImg8bit/test" / city / f"{city}_{n}_leftImg8bit.png", h, w, i)
    samples = list_samples("cityscapes", root, "test", with_labels=False)
    index = root / "index.csv"
    write_index(samples, index, provenance({}))
    return index


def acdc_test(root):
    """ACDC-shaped test images, rgb_anon/{condition}/test/{sequence}/{name}_rgb_anon.png, 1080x1920 scaled down."""
    samples = []
    for i, (cond, seq, frame) in enumerate(
        (("fog", "GP010475", 41), ("night", "GP010594", 7), ("night", "GP020594", 9))
    ):
        image = root / "rgb_anon" / cond / "test" / seq / f"{seq}_frame_{frame:06d}_rgb_anon.png"
        write_image(image, 27, 48, 10 + i)
        samples.append(Sample(image.name.removesuffix("_rgb_anon.png"), str(image), None))
    index = root / "index.csv"
    write_index(samples, index, provenance({}))
    return index


def tiny_model(path, num_classes=19, seed=0):
    torch.manual_seed(seed)
    kwargs = {"layers": [1, 1, 1, 1], "width": 4}
    save_checkpoint(path, build_model(num_classes, **kwargs), kwargs)
    return path


def params(**kw):
    return Params(**{"format": "cityscapes", "root": "", "target": TARGET, "batch_size": 2, **kw})


def entries(path):
    """{name: (PIL mode, (width, height), values)} of a zip's PNGs, decoded with PIL (as cityscapesScripts reads)."""
    out = {}
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            image = Image.open(io.BytesIO(zf.read(name)))
            out[name] = (image.mode, image.size, np.array(image))
    return out


# ------------------------------------------------------------------------------------------- the table


def test_the_table_is_the_official_one_and_the_inverse_of_the_label_reading():
    assert TRAINID_TO_CITYSCAPES_ID == OFFICIAL
    assert {v: k for k, v in CITYSCAPES_ID_TO_TRAINID.items()} == TRAINID_TO_CITYSCAPES_ID
    ids = to_cityscapes_ids(np.arange(19, dtype=np.uint8).reshape(1, 19))
    assert ids.dtype == np.uint8 and ids.tolist() == [[OFFICIAL[t] for t in range(19)]]
    for bad in (19, 255, -1):
        with pytest.raises(ValueError, match=f"value {bad} is not a trainId"):
            to_cityscapes_ids(np.array([0, bad]))


# ------------------------------------------------------------------------------------------- cityscapes


def test_cityscapes_zip_names_sizes_and_label_ids(tmp_path):
    index = cityscapes_test(tmp_path / "cs")
    model = tiny_model(tmp_path / "model.pt")
    out = tmp_path / "export/pretrain_target_test.zip"
    log = io.StringIO()
    run(params(root=str(tmp_path / "cs")), {"model": str(model), "index": str(index)}, [str(out)], log=log)
    samples = read_index(index)
    got = entries(out)
    # named as the input images, at the top of the zip, in the index's order
    assert list(got) == [f"{s.name}_leftImg8bit.png" for s in samples]
    sizes = {f"{city}_{n}": (w, h) for city, n, h, w in CITYSCAPES}
    for s in samples:
        mode, size, values = got[f"{s.name}_leftImg8bit.png"]
        assert mode == "L" and size == sizes[s.name]  # 8-bit grayscale, the image's own size
        assert set(np.unique(values)) <= set(OFFICIAL.values())
        # cityscapesScripts' getPrediction: exactly one file matches {city}_{seq}_{frame}*.png
        assert len(fnmatch.filter(got, f"{s.name}*.png")) == 1
    # the same predictions as the model upsampled to each image's size (align_corners=True), as evaluation does
    net = build_model(19, layers=[1, 1, 1, 1], width=4)
    net.load_state_dict(torch.load(model, weights_only=True)["state_dict"])
    net.eval()
    for s in samples:
        x = torch.from_numpy(read_image(s.image, SIZE).astype(np.float32) - np.float32(MEAN)).permute(2, 0, 1)
        with torch.no_grad():
            main = net(x[None])[1]
        h, w = read_image(s.image).shape[:2]
        pred = torch.nn.functional.interpolate(main, size=(h, w), mode="bilinear", align_corners=True)[0].argmax(0)
        expected = np.vectorize(OFFICIAL.get)(pred.numpy())
        np.testing.assert_array_equal(got[f"{s.name}_leftImg8bit.png"][2], expected)
    with zipfile.ZipFile(out) as zf:
        prov = json.loads(zf.comment)
        assert prov["config"]["format"] == "cityscapes" and str(model) in prov["inputs"]
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zf.infolist())
    text = log.getvalue()
    assert "export done: 3 img" in text
    assert "warning: 3 of 3 images are not 2048x1024" in text
    assert not list(out.parent.glob("*.tmp-*"))


class Known(nn.Module):
    """Main logits of known values: a fixed 1x1 map of the 4x4-average-pooled input (BGR, mean subtracted) to 19
    classes, so the prediction can be computed without torch."""

    def __init__(self, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.weight, self.bias = rng.normal(size=(19, 3)), rng.normal(size=19)
        self.register_buffer("w", torch.from_numpy(self.weight))
        self.register_buffer("b", torch.from_numpy(self.bias))

    def forward(self, x):
        pooled = torch.nn.functional.avg_pool2d(x.double(), 4)
        main = torch.einsum("kc,nchw->nkhw", self.w, pooled) + self.b[None, :, None, None]
        return None, main.float()


def upsample_align_corners(a, h, w):
    """Bilinear resize of (C, h0, w0) to (C, h, w) with corner pixels aligned, in NumPy float64."""
    _, h0, w0 = a.shape
    ys = np.arange(h) * ((h0 - 1) / (h - 1) if h > 1 else 0.0)
    xs = np.arange(w) * ((w0 - 1) / (w - 1) if w > 1 else 0.0)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h0 - 1), np.minimum(x0 + 1, w0 - 1)
    fy, fx = (ys - y0)[None, :, None], (xs - x0)[None, None, :]
    top = a[:, y0][:, :, x0] * (1 - fx) + a[:, y0][:, :, x1] * fx
    bottom = a[:, y1][:, :, x0] * (1 - fx) + a[:, y1][:, :, x1] * fx
    return top * (1 - fy) + bottom * fy


@pytest.mark.parametrize("device", DEVICES)
def test_ids_are_an_independent_argmax_through_the_table(tmp_path, device):
    """The stage's ids for `Known` = NumPy's pooling, 1x1 map, align_corners upsampling, argmax, then `OFFICIAL`
    (pixels whose two best classes are within 1e-4 are left out: float32 against float64)."""
    index = cityscapes_test(tmp_path / "cs")
    samples = read_index(index)
    model = Known()
    out = tmp_path / "known.zip"
    names = entry_names(samples, "flat", tmp_path / "cs")
    kw = dict(size=SIZE, mean_bgr=MEAN, batch_size=2, device=device)
    export_predictions(model, samples, names, out, ids="label", **kw)
    got = entries(out)
    lut = np.array([OFFICIAL[t] for t in range(19)])
    for s, name in zip(samples, names):
        x = read_image(s.image, SIZE).astype(np.float64) - np.array(MEAN)  # H×W×3 BGR
        pooled = x.reshape(SIZE[0] // 4, 4, SIZE[1] // 4, 4, 3).mean(axis=(1, 3))
        logits = np.einsum("kc,hwc->khw", model.weight, pooled) + model.bias[:, None, None]
        h, w = read_image(s.image).shape[:2]
        up = upsample_align_corners(logits, h, w)
        top2 = np.sort(up, axis=0)[-2:]
        clear = top2[1] - top2[0] > 1e-4
        assert clear.mean() > 0.95
        np.testing.assert_array_equal(got[name][2][clear], lut[up.argmax(0)][clear])
        assert got[name][1] == (w, h)
    # trainIds instead: the same argmax, unmapped
    export_predictions(model, samples, names, tmp_path / "train.zip", ids="train", **kw)
    train = entries(tmp_path / "train.zip")
    for name in names:
        np.testing.assert_array_equal(lut[train[name][2]], got[name][2])


def test_a_model_with_another_class_count_is_refused(tmp_path):
    index = cityscapes_test(tmp_path / "cs")
    model = tiny_model(tmp_path / "synthia16.pt", num_classes=16)
    out = tmp_path / "out.zip"
    with pytest.raises(ValueError) as e:
        run(params(), {"model": str(model), "index": str(index)}, [str(out)], log=io.StringIO())
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"{model}: the model predicts 16 classes")
    assert "export.format=cityscapes" in message and "data.num_classes: 19" in message
    assert not out.exists() and not list(tmp_path.glob("out.zip*"))


def test_bad_params_are_refused_naming_the_key():
    for key, value in (("format", "kitti"), ("ids", "color"), ("naming", "nested")):
        with pytest.raises(ValueError, match=f"config export.{key}={value!r}"):
            params(**{key: value})
    with pytest.raises(ValueError, match="evaluate.batch_size"):
        params(batch_size=0)


# ------------------------------------------------------------------------------------------- acdc


def test_acdc_keeps_the_condition_folders_and_writes_train_ids(tmp_path):
    root = tmp_path / "acdc"
    index = acdc_test(root)
    model = tiny_model(tmp_path / "model.pt")
    out = tmp_path / "acdc.zip"
    p = params(format="acdc", root=str(root))
    assert (p.label_ids, p.entry_naming) == ("train", "folders")
    run(p, {"model": str(model), "index": str(index)}, [str(out)], log=io.StringIO())
    got = entries(out)
    assert list(got) == [
        "fog/test/GP010475/GP010475_frame_000041_rgb_anon.png",
        "night/test/GP010594/GP010594_frame_000007_rgb_anon.png",
        "night/test/GP020594/GP020594_frame_000009_rgb_anon.png",
    ]
    for mode, size, values in got.values():
        assert mode == "L" and size == (48, 27) and values.max() < 19
    # export.naming: flat puts them in one folder (unique names across conditions)
    flat = tmp_path / "flat.zip"
    run(params(format="acdc", root=str(root), naming="flat"), {"model": str(model), "index": str(index)}, [str(flat)])
    assert list(entries(flat)) == [name.rsplit("/", 1)[1] for name in got]


def test_names_that_collide_are_refused(tmp_path):
    samples = [Sample("a", str(tmp_path / c / "x_rgb_anon.png"), None) for c in ("fog", "snow")]
    assert entry_names(samples, "folders", tmp_path) == ["fog/x_rgb_anon.png", "snow/x_rgb_anon.png"]
    with pytest.raises(ValueError, match=r"would both be exported as 'x_rgb_anon.png' \(config export.naming: flat\)"):
        entry_names(samples, "flat", tmp_path)
    with pytest.raises(ValueError, match=r"not under the dataset root .* \(config data.target.root\)"):
        entry_names(samples, "folders", tmp_path / "elsewhere")


# ------------------------------------------------------------------------------------------- the DAG


def planned(workdir, targets=()):
    """{job: job} a dry run of `targets` (default: `all`) plans for workdir/config.yaml."""
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        wf = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[workdir / "config.yaml"]),
            snakefile=REPO / "Snakefile",
            workdir=workdir,
        )
        wf.dag(DAGSettings(targets=set(targets))).execute_workflow(executor="dryrun")
        return {job_name(j): j for j in wf._workflow.dag.needrun_jobs(exclude_finished=False)}


def test_export_is_planned_on_request_and_not_by_all(tmp_path):
    config = yaml.safe_load(yaml.safe_dump(TINY))
    write_config(tmp_path, config)
    everything = planned(tmp_path)
    assert not any(n.startswith("export") or n == "index:split=target_test" for n in everything)
    jobs = planned(tmp_path, ["results/tiny/export/esl_r1_target_test.zip"])
    job = jobs["export:model=esl_r1,split=target_test"]
    assert list(map(str, job.input)) == ["results/tiny/selftrain/esl_r1/model.pt", "results/tiny/index/target_test.csv"]
    assert (job.params.format, job.params.ids, job.params.naming) == ("cityscapes", None, None)
    assert str(job.log[0]) == "results/tiny/logs/export_esl_r1_target_test.log"
    index = jobs["index:split=target_test"].params.dataset
    assert (index["split"], index["list_file"], index["root"]) == ("test", None, "data/toy/target")
    # export.split / list_file choose the indexed split; export.from a snapshot of the model; target_val works too
    config["export"] = {"split": "night_test", "list_file": "lst.txt", "format": "acdc", "from": "selected"}
    write_config(tmp_path, config)
    jobs = planned(
        tmp_path, ["results/tiny/export/pretrain_target_test.zip", "results/tiny/export/pretrain_target_val.zip"]
    )
    assert jobs["index:split=target_test"].params.dataset["split"] == "night_test"
    assert jobs["index:split=target_test"].params.dataset["list_file"] == "lst.txt"
    assert "select_model:model=pretrain,choice=selected" in jobs
    for split in ("target_test", "target_val"):
        job = jobs[f"export:model=pretrain,split={split}"]
        assert str(job.input[0]) == "results/tiny/chosen/pretrain_selected.pt" and job.params.format == "acdc"
