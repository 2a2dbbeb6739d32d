"""Rule `export`: a model's predictions on a target split, zipped as a benchmark server takes them, so that a test
split (no labels) is submitted without writing code.

Each image of the split's index is read and resized to the target input size as for evaluation, the main head's logits
are upsampled bilinearly (`align_corners=True`, as `esl.stages.evaluate`) to the image's own size, the argmax is taken,
and the trainIds are written as an 8-bit grayscale PNG, mapped to Cityscapes label ids
(`esl.io.labels.to_cityscapes_ids`) or kept as trainIds, one zip entry per image. A format (`FORMATS`, config
`export.format`) fixes the server's defaults: which ids (`export.ids`), how entries are named (`NAMINGS`,
`export.naming`) and the image size its test images have (another size is warned about, not refused: the prediction
always has the image's own size). Only 19-class models are exported: both servers score the 19 Cityscapes classes.

* `cityscapes`: label ids, `flat` names: each prediction is named as its input image, `{city}_{seq}_{frame}_leftImg8bit
  .png`, at the top of the zip. The server (cityscapesScripts' `evalPixelLevelSemanticLabeling.getPrediction`) finds
  the one file matching `{city}_{seq}_{frame}*.png` in any folder, so any suffix would do; the input's own name is the
  common convention (mmsegmentation's `format_only`) and keeps the entry traceable to its image.
* `acdc`: trainIds, `folders` names: the input's path under the image folder, `{condition}/{split}/{sequence}/
  {name}_rgb_anon.png` (the folders of `rgb_anon/`, the file named as the input image). ACDC's submission page, as
  published code quotes it, asks for predictions of the input's size (1920x1080) encoded as trainIds ("road should
  correspond to ID 0"), which is what published submissions write (mmsegmentation's `to_label_id=False`, Refign's
  `predict`); those put every file in one folder, which `export.naming: flat` gives (ACDC's file names are unique
  across conditions), and `export.ids: label` writes label ids instead.

The zip's comment holds the provenance JSON (`zipfile.ZipFile(path).comment`); entries have a fixed timestamp.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from esl.io.files import atomic_path
from esl.io.images import read_image, resize_bicubic
from esl.io.labels import TRAINID_TO_CITYSCAPES_ID, to_cityscapes_ids
from esl.io.layouts import read_index
from esl.io.provenance import provenance
from esl.io.torchdata import device_mean, normalize
from esl.models.checkpoints import load_checkpoint
from esl.runtime.background import Background
from esl.runtime.device import place, to_input
from esl.runtime.progress import Progress
from esl.stages.params import StageParams, check_input, check_int, input_files, the_file, torch_device

NUM_CLASSES = len(TRAINID_TO_CITYSCAPES_ID)  # the 19 classes both benchmarks score
IDS = ("label", "train")  # Cityscapes label ids (`*_labelIds.png`) or trainIds 0..18
PNG_LEVEL = 6  # zlib level: a 2048x1024 label map in ~20 kB and ~20 ms (OpenCV's default writes ~10x larger files)
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # every entry's timestamp: the same predictions give the same entries
IMAGE_FOLDERS = ("leftImg8bit", "rgb_anon")  # the image folder under a dataset root, left out of `folders` names


@dataclasses.dataclass(frozen=True)
class Format:
    """A benchmark server's submission: its default ids and naming, and the (H, W) of its test images."""

    name: str
    ids: str
    naming: str
    size: tuple[int, int]


FORMATS = {
    "cityscapes": Format("cityscapes", ids="label", naming="flat", size=(1024, 2048)),
    "acdc": Format("acdc", ids="train", naming="folders", size=(1080, 1920)),
}


def flat_name(image, root) -> str:
    """The input image's file name (`berlin_000000_000019_leftImg8bit.png`)."""
    return Path(image).name


def folders_name(image, root) -> str:
    """The input image's path under the dataset root `root`, less its image folder (`leftImg8bit/`, `rgb_anon/`):
    `fog/test/GOPR0475/GOPR0475_frame_000041_rgb_anon.png`."""
    rel = Path(os.path.relpath(os.path.abspath(image), os.path.abspath(root)))
    if rel.parts[0] == "..":
        raise ValueError(
            f"{image}: not under the dataset root {root} (config data.target.root), which `folders` names are relative"
            " to; use config export.naming: flat"
        )
    parts = rel.parts[1:] if len(rel.parts) > 1 and rel.parts[0] in IMAGE_FOLDERS else rel.parts
    return "/".join(parts)


NAMINGS: dict[str, Callable] = {"flat": flat_name, "folders": folders_name}


def entry_names(samples, naming: str, root) -> list[str]:
    """The zip entry of each sample's prediction; two samples with the same entry are refused."""
    names = [NAMINGS[naming](s.image, root) for s in samples]
    seen: dict[str, str] = {}
    for s, name in zip(samples, names):
        if name in seen:
            raise ValueError(
                f"{s.image} and {seen[name]} would both be exported as {name!r} (config export.naming: {naming});"
                " choose another naming"
            )
        seen[name] = s.image
    return names


def check_model_classes(num_classes: int, path, format_name: str) -> None:
    """One line unless the model predicts the 19 classes the benchmark scores."""
    if num_classes != NUM_CLASSES:
        raise ValueError(
            f"{path}: the model predicts {num_classes} classes, but export.format={format_name} takes the"
            f" {NUM_CLASSES} Cityscapes classes; export a model trained with config data.num_classes: {NUM_CLASSES}"
        )


def encode(trainids: np.ndarray, ids: str) -> bytes:
    """A (H, W) trainId map as the PNG a server reads: 8-bit grayscale, label ids or trainIds."""
    label = to_cityscapes_ids(trainids) if ids == "label" else np.ascontiguousarray(trainids, dtype=np.uint8)
    ok, png = cv2.imencode(".png", label, [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL])
    if not ok:
        raise RuntimeError(f"PNG encoding of a {label.shape} prediction failed")
    return png.tobytes()


class _Images(Dataset):
    """(uint8 H×W×3 BGR image at `size`, its original (h, w), index): `read_image(path, size)`, with the size kept."""

    def __init__(self, samples, size):
        self.samples, self.size = list(samples), tuple(int(v) for v in size)

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        image = read_image(self.samples[i].image)
        h, w = image.shape[:2]
        if (h, w) != self.size:
            image = resize_bicubic(image, *self.size)
        return torch.from_numpy(image), torch.tensor([h, w]), i


@torch.no_grad()
def export_predictions(
    model,
    samples,
    names,
    zip_path,
    *,
    size,
    mean_bgr,
    ids: str = "label",
    batch_size: int = 8,
    device="cpu",
    num_workers: int = 0,
    comment: bytes = b"",
    log=None,
) -> Counter:
    """Write each sample's prediction (`encode`) into a new zip at `zip_path` under its entry of `names`; returns the
    count of each original image size (h, w).

    `model(x)` returns (aux, main) logits; the main ones, upsampled (bilinear, align_corners=True) to the image's own
    size, give the argmax. PNG encoding and zip writes run in a background thread while the next batch computes."""
    if ids not in IDS:
        raise ValueError(f"config export.ids={ids!r} must be one of {', '.join(IDS)}")
    device = torch.device(device)
    loader = DataLoader(
        _Images(samples, size), batch_size=batch_size, num_workers=num_workers, pin_memory=device.type == "cuda"
    )
    place(model, device, False).eval()
    mean = device_mean(mean_bgr, device)
    sizes: Counter = Counter()
    progress = Progress("export", len(samples), unit="img", stream=log)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.comment = comment

        def write(name: str, trainids: np.ndarray) -> None:
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.external_attr = 0o644 << 16
            zf.writestr(info, encode(trainids, ids))

        writer = Background("export writer")
        try:
            for images, hw, index in loader:
                _, main = model(normalize(to_input(images, device, False), mean))
                for j, i in enumerate(index.tolist()):
                    h, w = (int(v) for v in hw[j])
                    up = F.interpolate(main[j : j + 1].float(), size=(h, w), mode="bilinear", align_corners=True)
                    writer.submit(write, names[i], up[0].argmax(0).to(torch.uint8).cpu().numpy())
                    sizes[(h, w)] += 1
                progress.update(len(index))
        finally:
            writer.close()
    progress.done()
    return sizes


@dataclasses.dataclass(frozen=True, kw_only=True)
class Params(StageParams):
    """Rule `export`: the server's format (config `export.format`), the ids and naming when not the format's
    (`export.ids`, `export.naming`), the target dataset's root (`folders` names are relative to it), the target's
    input params, the batch size and the DataLoader workers."""

    rule = "export"
    format: str
    ids: str | None = None
    naming: str | None = None
    root: str
    target: dict
    batch_size: int
    num_workers: int | None = 0

    def check(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"config export.format={self.format!r} must be one of {', '.join(FORMATS)}")
        if self.ids is not None and self.ids not in IDS:
            raise ValueError(f"config export.ids={self.ids!r} must be null or one of {', '.join(IDS)}")
        if self.naming is not None and self.naming not in NAMINGS:
            raise ValueError(f"config export.naming={self.naming!r} must be null or one of {', '.join(NAMINGS)}")
        check_input(self.rule, "target", self.target)
        check_int(self.batch_size, "evaluate.batch_size", low=1)
        check_int(self.num_workers, "infer.num_workers", none_ok=True)

    @property
    def spec(self) -> Format:
        return FORMATS[self.format]

    @property
    def label_ids(self) -> str:
        """The ids written: `export.ids`, else the format's."""
        return self.ids or self.spec.ids

    @property
    def entry_naming(self) -> str:
        """The naming used: `export.naming`, else the format's."""
        return self.naming or self.spec.naming


def run(params: Params, inputs, outputs, log=None, *, threads=None, device=None) -> None:
    """Predictions of `inputs["model"]` on the split of `inputs["index"]` -> the zip `outputs` (written atomically)."""
    log = sys.stdout if log is None else log
    device = torch_device(threads, device)
    model, _ = load_checkpoint(inputs["model"])
    check_model_classes(model.num_classes, inputs["model"], params.format)
    samples = read_index(inputs["index"])
    names = entry_names(samples, params.entry_naming, params.root)
    out = the_file(outputs)
    comment = json.dumps(provenance(params.as_dict(), input_files(inputs)), sort_keys=True).encode()
    print(
        f"export: {len(samples)} images of {inputs['index']} as {params.format} ({params.label_ids} ids,"
        f" {params.entry_naming} names, e.g. {names[0]})",
        file=log,
    )
    with atomic_path(out) as tmp:
        sizes = export_predictions(
            model,
            samples,
            names,
            tmp,
            size=params.target["size"],
            mean_bgr=params.target["mean_bgr"],
            ids=params.label_ids,
            batch_size=params.batch_size,
            device=device,
            num_workers=params.num_workers or 0,
            comment=comment,
            log=log,
        )
    expected = params.spec.size
    others = Counter({hw: n for hw, n in sizes.items() if hw != expected})
    if others:
        other = sum(others.values())
        (h, w), _ = others.most_common(1)[0]
        print(
            f"warning: {other} of {len(samples)} images are not {expected[1]}x{expected[0]}, the size of the"
            f" {params.format} test images (e.g. {w}x{h}): each prediction has its image's own size",
            file=log,
        )
    print(f"{out}: {len(samples)} predictions", file=log)
