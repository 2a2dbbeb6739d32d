"""Dataset layouts as they ship: listing samples, reading images and labels as trainIds.

Layouts (``{split}`` and ``{city}`` are folder names):

* ``trainids`` (the toy): ``{root}/{split}/images/*.png`` and ``{root}/{split}/labels/*.png``, same stem; labels hold
  class ids already (0..num_classes-1, 255 = ignore).
* ``gta5``: ``{root}/images/*.png`` and ``{root}/labels/*.png``, same file name; labels hold Cityscapes label ids
  (palette PNGs as shipped, or plain 8-bit). Splits ``all``/``train`` are everything; other splits need a list file.
* ``synthia`` (SYNTHIA-RAND-CITYSCAPES): ``{root}/RGB/*.png`` and ``{root}/GT/LABELS/*.png``, same file name; labels
  are 16-bit multi-channel PNGs with the class id in the R channel. Splits as for ``gta5``.
* ``cityscapes``: ``{root}/leftImg8bit/{split}/{city}/*_leftImg8bit.png``; labels
  ``{root}/gtFine/{split}/{city}/*_gtFine_labelTrainIds.png`` when present, else ``*_gtFine_labelIds.png``.

Label space: ``read_label(..., num_classes=19)`` returns Cityscapes trainIds; ``num_classes=16`` returns the 16 classes
shared with SYNTHIA (``CLASS_NAMES_16``). ``gta5``/``cityscapes`` are converted 19 → 16 with ``to_16_classes`` and
``synthia`` 16 → 19 with ``to_19_classes`` when asked; ``trainids`` labels are taken as they are, in any class count.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from .classes import CLASS_NAMES, IGNORE
from .h5io import read_csv, write_csv


class DatasetError(ValueError):
    """A dataset that is missing, incomplete or not encoded as its layout says; the message is one line."""


@dataclass(frozen=True)
class Sample:
    name: str  # unique in the split: the file stem (cityscapes: the stem without `_leftImg8bit`)
    image: str
    label: str | None


# The class count each layout's labels are natively expressed in; the workflow's `data.num_classes` chooses the space.
NUM_CLASSES = {"trainids": 19, "gta5": 19, "synthia": 16, "cityscapes": 19}
LAYOUTS = tuple(NUM_CLASSES)

# Cityscapes label id → trainId (GTA5 uses the same ids). Unlisted ids are ignored.
CITYSCAPES_ID_TO_TRAINID = {
    7: 0,
    8: 1,
    11: 2,
    12: 3,
    13: 4,
    17: 5,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    31: 16,
    32: 17,
    33: 18,
}
CITYSCAPES_MAX_ID = 33  # label ids 0..33 are legal in `*_labelIds.png`, and 255 (license plate, id -1)

# SYNTHIA class id (R channel) → 16-class id. Unlisted ids are ignored.
SYNTHIA_ID_TO_16 = {
    3: 0,
    4: 1,
    2: 2,
    21: 3,
    5: 4,
    7: 5,
    15: 6,
    9: 7,
    6: 8,
    1: 9,
    10: 10,
    17: 11,
    8: 12,
    19: 13,
    12: 14,
    11: 15,
}

# The trainIds (19-class space) of the 16 SYNTHIA classes, in 16-class order: all but terrain, truck, train.
CLASSES_16_OF_19 = (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)
CLASS_NAMES_16 = tuple(CLASS_NAMES[i] for i in CLASSES_16_OF_19)
# The 16-class indices of the 13 classes of the usual mIoU-13: the 16 without wall, fence, pole.
CLASSES_13 = tuple(i for i, n in enumerate(CLASS_NAMES_16) if n not in ("wall", "fence", "pole"))
CLASS_NAMES_13 = tuple(CLASS_NAMES_16[i] for i in CLASSES_13)


def _lut(table: dict, size: int) -> np.ndarray:
    lut = np.full(size, IGNORE, dtype=np.uint8)
    for k, v in table.items():
        lut[k] = v
    return lut


_CITYSCAPES_LUT = _lut(CITYSCAPES_ID_TO_TRAINID, 256)
_SYNTHIA_LUT = _lut(SYNTHIA_ID_TO_16, 1 << 16)
_LUT_19_TO_16 = _lut({c19: c16 for c16, c19 in enumerate(CLASSES_16_OF_19)} | {IGNORE: IGNORE}, 256)
_LUT_16_TO_19 = _lut(dict(enumerate(CLASSES_16_OF_19)) | {IGNORE: IGNORE}, 256)


def class_names(num_classes: int) -> tuple[str, ...]:
    """Names of the classes of a label space: the 19 trainIds, the 16 SYNTHIA classes, or `class{i}` otherwise."""
    if num_classes == len(CLASS_NAMES):
        return CLASS_NAMES
    if num_classes == len(CLASS_NAMES_16):
        return CLASS_NAMES_16
    return tuple(f"class{i}" for i in range(num_classes))


def _convert(label, lut: np.ndarray, valid: int, what: str) -> np.ndarray:
    label = np.asarray(label)
    bad = (label != IGNORE) & ((label < 0) | (label >= valid))
    if bad.any():
        raise ValueError(f"{what}: value {label[bad].flat[0]} outside 0..{valid - 1}/{IGNORE}")
    return lut[label.astype(np.uint8)]


def to_16_classes(trainid_label) -> np.ndarray:
    """19 trainIds → the 16 SYNTHIA classes (terrain, truck, train → 255; the rest renumbered in order)."""
    return _convert(trainid_label, _LUT_19_TO_16, 19, "to_16_classes")


def to_19_classes(label16) -> np.ndarray:
    """The 16 SYNTHIA classes → 19 trainIds (inverse of `to_16_classes` on the classes it keeps)."""
    return _convert(label16, _LUT_16_TO_19, 16, "to_19_classes")


def check_num_classes(layout: str, num_classes: int) -> None:
    """Fail unless `layout` can give labels in a `num_classes`-class space."""
    _check_layout(layout)
    if layout == "trainids":
        if not 1 <= int(num_classes) <= 255:
            raise DatasetError(f"layout trainids: num_classes must be in 1..255, got {num_classes}")
    elif num_classes not in (16, 19):
        raise DatasetError(
            f"layout {layout}: num_classes must be 19 (trainIds) or 16 (SYNTHIA classes), got {num_classes}"
        )


def _check_layout(layout: str) -> None:
    if layout not in NUM_CLASSES:
        raise DatasetError(f"unknown dataset layout {layout!r}; expected one of {', '.join(LAYOUTS)}")


# --------------------------------------------------------------------------------------------------- listing


def _require_dir(path: Path, layout: str, what: str) -> None:
    if not path.is_dir():
        raise DatasetError(f"{path}: {what} folder not found (layout {layout})")


def _pngs(folder: Path, suffix: str = ".png") -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file() and p.name.endswith(suffix)]


def _flat_split(layout: str, split: str, list_file) -> None:
    if split not in ("all", "train") and list_file is None:
        raise DatasetError(
            f"layout {layout} has one split: split must be 'all' or 'train' (got {split!r}) or a list file"
        )


def _candidates(layout: str, root: Path, split: str, list_file, with_labels: bool):
    """(name, image path, list keys, label candidates) for every image of the split, plus the image folder."""
    out = []
    if layout == "trainids":
        _require_dir(root / split, layout, f"split '{split}'")
        img_dir, lab_dir = root / split / "images", root / split / "labels"
        _require_dir(img_dir, layout, "image")
        if with_labels:
            _require_dir(lab_dir, layout, "label")
        for p in _pngs(img_dir):
            out.append((p.stem, p, (p.name,), (lab_dir / p.name,)))
    elif layout in ("gta5", "synthia"):
        _flat_split(layout, split, list_file)
        img_dir = root / ("images" if layout == "gta5" else "RGB")
        lab_dir = root / ("labels" if layout == "gta5" else "GT/LABELS")
        _require_dir(img_dir, layout, "image")
        if with_labels:
            _require_dir(lab_dir, layout, "label")
        for p in _pngs(img_dir):
            out.append((p.stem, p, (p.name, f"{img_dir.name}/{p.name}"), (lab_dir / p.name,)))
    else:  # cityscapes
        img_dir, lab_dir = root / "leftImg8bit" / split, root / "gtFine" / split
        _require_dir(img_dir, layout, "image")
        if with_labels:
            _require_dir(lab_dir, layout, "label")
        suffix = "_leftImg8bit.png"
        for city in sorted(d for d in img_dir.iterdir() if d.is_dir()):
            for p in _pngs(city, suffix):
                stem = p.name[: -len(suffix)]
                keys = (p.name, f"{city.name}/{p.name}", f"leftImg8bit/{split}/{city.name}/{p.name}")
                labels = (
                    lab_dir / city.name / f"{stem}_gtFine_labelTrainIds.png",
                    lab_dir / city.name / f"{stem}_gtFine_labelIds.png",
                )
                out.append((stem, p, keys, labels))
    return out, img_dir


def read_list_file(list_file) -> list[str]:
    """Entries of a list file: one per line, blank lines and `#` comments skipped."""
    try:
        lines = Path(list_file).read_text().splitlines()
    except OSError as e:
        raise DatasetError(f"{list_file}: cannot read list file ({e.strerror or e})") from None
    return [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]


def list_samples(layout: str, root, split: str, list_file=None, with_labels: bool = True) -> list[Sample]:
    """The samples of a split, sorted by name (or in list-file order), each image checked to have its label.

    `list_file`: a text file, one entry per line, restricting and ordering the split; an entry is a sample name, an
    image file name, or an image path relative to the image folder (or, for cityscapes, to `root`).
    """
    _check_layout(layout)
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root not found (layout {layout})")
    cands, img_dir = _candidates(layout, root, split, list_file, with_labels)
    by_key: dict[str, tuple] = {}
    names = set()
    for c in cands:
        if c[0] in names:
            raise DatasetError(f"{c[1]}: sample name {c[0]!r} is not unique in {img_dir}")
        names.add(c[0])
        for k in (c[0],) + c[2]:
            by_key.setdefault(k, c)
    if list_file is not None:
        chosen, seen = [], set()
        for entry in read_list_file(list_file):
            c = by_key.get(entry) or by_key.get(entry.replace("\\", "/").removeprefix("./"))
            if c is None:
                raise DatasetError(f"{list_file}: entry {entry!r} matches no image of {img_dir} (layout {layout})")
            if c[0] in seen:
                raise DatasetError(f"{list_file}: sample {c[0]!r} listed twice")
            seen.add(c[0])
            chosen.append(c)
    else:
        chosen = sorted(cands, key=lambda c: c[0])
    if not chosen:
        where = f"{img_dir} (list file {list_file})" if list_file is not None else str(img_dir)
        raise DatasetError(f"{where}: no images found (layout {layout})")
    samples = []
    for name, image, _keys, labels in chosen:
        label = None
        if with_labels:
            label = next((p for p in labels if p.is_file()), None)
            if label is None:
                raise DatasetError(f"{image}: no label found (expected {labels[-1]}, layout {layout})")
        samples.append(Sample(name, str(image), None if label is None else str(label)))
    return samples


def write_index(samples, path, prov: dict) -> None:
    """Write samples as a CSV `name,image,label` (an empty label for unlabelled samples), with provenance."""
    df = pd.DataFrame(
        [(s.name, s.image, "" if s.label is None else s.label) for s in samples], columns=["name", "image", "label"]
    )
    write_csv(df, path, prov)


def read_index(path) -> list[Sample]:
    df = read_csv(path, dtype=str, keep_default_na=False)
    missing = {"name", "image", "label"} - set(df.columns)
    if missing:
        raise DatasetError(f"{path}: not a sample index (missing column(s) {', '.join(sorted(missing))})")
    return [Sample(n, i, lab or None) for n, i, lab in zip(df["name"], df["image"], df["label"])]


# --------------------------------------------------------------------------------------------------- reading


def _hw(size) -> tuple[int, int]:
    h, w = (int(v) for v in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be (H, W) > 0, got {tuple(size)}")
    return h, w


def _decode(data: bytes, flags: int) -> np.ndarray | None:
    if not data:
        return None
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:
        return None


def resize_bicubic(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """A uint8 H×W×C image resized to (h, w) like PIL's `Image.resize((w, h), Image.BICUBIC)`.

    PIL's bicubic is a convolution (a = -0.5) whose support widens with the shrink factor, i.e. it antialiases when
    shrinking and interpolates plainly when enlarging; cv2's INTER_CUBIC (a = -0.75, fixed 4×4 support) does not
    antialias. torch's uint8 `interpolate(mode="bicubic", antialias=True)` (torch >= 2.1) was written to match PIL: at
    the paper sizes it agrees to within 1-2 grey levels, > 99 % of pixels exact, and is 3-5x faster than PIL. Channels
    are resized independently, so BGR or RGB order does not matter."""
    import torch  # here, not at module level: workflow scripts that only list datasets stay light
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).unsqueeze(0)  # 1×C×H×W view of the HWC array
    out = F.interpolate(t, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
    return np.ascontiguousarray(out[0].permute(1, 2, 0).numpy())


def read_image(path, size=None) -> np.ndarray:
    """A uint8 H×W×3 BGR image, resized to `size` = (H, W) if given and different (`resize_bicubic`).

    The resize reproduces ADVENT's data loaders, which open images with PIL and `resize((W, H), Image.BICUBIC)`
    (antialiased when shrinking: Cityscapes 2048×1024 → 1024×512, GTA5 1914×1052 → 1280×720): the released
    checkpoints were trained and evaluated on PIL-resized inputs, and cv2's INTER_CUBIC differs from them by ~10 grey
    levels on average on textured images. Decoding stays with cv2 (lossless, so only the resize matters)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        raise DatasetError(
            f"{path}: image not found" if not Path(path).exists() else f"{path}: cannot read image"
        ) from None
    img = _decode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(f"{path}: cannot read image")
    if size is not None:
        h, w = _hw(size)
        if img.shape[:2] != (h, w):
            img = resize_bicubic(img, h, w)
    return img


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _palette_as_gray(data: bytes) -> bytes | None:
    """A palette PNG rewritten as a grayscale one whose values are the palette indices; None if not a palette PNG.

    OpenCV expands palette PNGs to colours; the shipped GTA5 labels are palette PNGs whose indices are the label ids.
    """
    if len(data) < 33 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR" or data[25] != 3:
        return None
    out = [data[:8]]
    pos = 8
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        ctype = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if ctype == b"IHDR":
            body = bytearray(data[pos + 4 : pos + 8 + length])
            body[4 + 9] = 0  # colour type: palette → grayscale, same bit depth and pixel packing
            out.append(data[pos : pos + 4] + bytes(body) + zlib.crc32(bytes(body)).to_bytes(4, "big"))
        elif ctype not in (b"PLTE", b"tRNS", b"bKGD", b"hIST", b"sBIT"):
            out.append(data[pos:end])
        pos = end
        if ctype == b"IEND":
            break
    return b"".join(out)


def _imread_label(path) -> np.ndarray:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError:
        raise DatasetError(f"{path}: label not found" if not path.exists() else f"{path}: cannot read label") from None
    gray = _palette_as_gray(data)
    label = _decode(gray if gray is not None else data, cv2.IMREAD_UNCHANGED)
    if gray is not None and label is not None and data[24] < 8:
        label = label // (255 // ((1 << data[24]) - 1))  # libpng scales 1/2/4-bit grayscale up to 0..255: undo it
    if label is None:
        raise DatasetError(f"{path}: cannot read label")
    return label


def _single_channel(label: np.ndarray, path, layout: str) -> np.ndarray:
    if label.ndim == 3 and label.shape[2] == 1:
        label = label[:, :, 0]
    if label.ndim != 2:
        raise DatasetError(
            f"{path}: expected a single-channel label image (layout {layout}), got {label.shape[2]} channels"
        )
    if label.dtype not in (np.uint8, np.uint16):
        raise DatasetError(f"{path}: expected an 8- or 16-bit integer label image (layout {layout}), got {label.dtype}")
    return label


def _first_bad(values: np.ndarray, ok: np.ndarray) -> int | None:
    bad = ~ok
    return int(values[bad].min()) if bad.any() else None


def read_label(layout: str, path, size=None, num_classes: int = 19) -> np.ndarray:
    """A uint8 label map in the `num_classes` space (19 trainIds, 16 SYNTHIA classes; 255 = ignore).

    Resized with nearest neighbour to `size` = (H, W) if given. Values that are not legal for the layout's encoding,
    or that fall outside 0..num_classes-1/255 after mapping, raise a `DatasetError` naming the file and the value.
    """
    _check_layout(layout)
    check_num_classes(layout, num_classes)
    raw = _imread_label(path)
    if layout == "synthia":
        if raw.dtype != np.uint16 or raw.ndim != 3 or raw.shape[2] < 3:
            got = f"{raw.dtype}, {1 if raw.ndim == 2 else raw.shape[2]} channel(s)"
            raise DatasetError(f"{path}: expected a 16-bit multi-channel SYNTHIA label (id in R), got {got}")
        label = _SYNTHIA_LUT[raw[:, :, 2]]  # BGR(A) order: R is index 2
        if num_classes == 19:
            label = _LUT_16_TO_19[label]
    elif layout == "trainids":
        raw = _single_channel(raw, path, layout)
        bad = _first_bad(raw, (raw < num_classes) | (raw == IGNORE))
        if bad is not None:
            raise DatasetError(f"{path}: label value {bad} outside 0..{num_classes - 1}/{IGNORE}")
        label = raw.astype(np.uint8)
    else:  # gta5, cityscapes
        raw = _single_channel(raw, path, layout)
        if layout == "cityscapes" and Path(path).name.endswith("_labelTrainIds.png"):
            bad = _first_bad(raw, (raw < 19) | (raw == IGNORE))
            if bad is not None:
                raise DatasetError(f"{path}: label value {bad} outside 0..18/{IGNORE} (Cityscapes trainIds)")
            label = raw.astype(np.uint8)
        else:
            if layout == "cityscapes":
                bad = _first_bad(raw, (raw <= CITYSCAPES_MAX_ID) | (raw == IGNORE))
                if bad is not None:
                    raise DatasetError(
                        f"{path}: label id {bad} outside the Cityscapes label ids 0..{CITYSCAPES_MAX_ID}/{IGNORE}"
                    )
            label = _CITYSCAPES_LUT[np.minimum(raw, 255)]
        if num_classes == 16:
            label = _LUT_19_TO_16[label]
    if size is not None:
        h, w = _hw(size)
        if label.shape != (h, w):
            label = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
    return np.ascontiguousarray(label, dtype=np.uint8)


def check_samples(layout: str, samples, num_classes: int, sample_every: int = 1, log=None) -> int:
    """Check that every file exists and that every `sample_every`-th image and label decode (labels validated).

    Fails with the first missing/unreadable file; returns how many samples were decoded. Accepted but reported to
    `log` with counts (a stream; None: not reported): images whose size differs from their label's (each is resized
    to the configured size on its own, so their pixels no longer line up exactly), and grayscale images (read as
    three equal channels).
    """
    check_num_classes(layout, num_classes)
    if sample_every < 1:
        raise ValueError(f"sample_every must be >= 1, got {sample_every}")
    for s in samples:
        for p, what in ((s.image, "image"), (s.label, "label")):
            if p is not None and not Path(p).is_file():
                raise DatasetError(f"{p}: {what} not found (sample {s.name})")
    decoded, mismatched, gray = 0, [], []
    for i, s in enumerate(samples):
        if i % sample_every:
            continue
        image = read_image(s.image)
        if _png_is_gray(s.image):
            gray.append(s.image)
        if s.label is not None:
            label = read_label(layout, s.label, num_classes=num_classes)
            if label.shape != image.shape[:2]:
                mismatched.append(
                    f"{s.image} {image.shape[0]}x{image.shape[1]}, label {label.shape[0]}x{label.shape[1]}"
                )
        decoded += 1
    if log is not None:
        if mismatched:
            print(
                f"warning: {len(mismatched)} of {decoded} images differ in size from their label (each is resized to"
                f" the input size on its own), e.g. {mismatched[0]}",
                file=log,
            )
        if gray:
            print(
                f"warning: {len(gray)} of {decoded} images are grayscale (read as 3 equal channels), e.g. {gray[0]}",
                file=log,
            )
    return decoded


def _png_is_gray(path) -> bool:
    """A PNG whose colour type (IHDR byte 25) is grayscale or grayscale + alpha."""
    with open(path, "rb") as f:
        head = f.read(26)
    return len(head) == 26 and head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR" and head[25] in (0, 4)
