"""Label spaces: the classes a model predicts, their names, the id maps of the datasets, and the colour palette.

Every dataset layout is read into one of these spaces (255 = ignore everywhere):

* `CITYSCAPES_19`: the 19 Cityscapes trainIds (GTA5, Cityscapes, the toy);
* `SYNTHIA_16`: the 16 classes SYNTHIA shares with Cityscapes (the 19 without terrain, truck, train), with the
  usual mIoU-13 over the 13 without wall, fence, pole.

`label_space(num_classes)` picks the space of a class count (`class{i}` names for any other count); a new target
with its own classes is one more `LabelSpace` here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IGNORE = 255


CLASS_NAMES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "light",
    "sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)


# The Cityscapes colour of each trainId, used for pictures only.
PALETTE = np.array(
    [
        (128, 64, 128),
        (244, 35, 232),
        (70, 70, 70),
        (102, 102, 156),
        (190, 153, 153),
        (153, 153, 153),
        (250, 170, 30),
        (220, 220, 0),
        (107, 142, 35),
        (152, 251, 152),
        (70, 130, 180),
        (220, 20, 60),
        (255, 0, 0),
        (0, 0, 142),
        (0, 0, 70),
        (0, 60, 100),
        (0, 80, 100),
        (0, 0, 230),
        (119, 11, 32),
    ],
    dtype=np.uint8,
)


def colorize(label: np.ndarray) -> np.ndarray:
    """RGB picture of a trainId map; ignored pixels are black."""
    out = np.zeros(label.shape + (3,), dtype=np.uint8)
    valid = label < len(PALETTE)
    out[valid] = PALETTE[label[valid]]
    return out


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


@dataclass(frozen=True)
class LabelSpace:
    """Named classes 0..C−1; `extra_means`: further mean-IoU rows reported for this space (name → class ids)."""

    name: str
    names: tuple[str, ...]
    extra_means: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def class_name(self, c: int) -> str:
        return self.names[c]


CITYSCAPES_19 = LabelSpace("cityscapes19", CLASS_NAMES)
SYNTHIA_16 = LabelSpace("synthia16", CLASS_NAMES_16, {"mIoU-13": CLASSES_13})
KNOWN_SPACES = (CITYSCAPES_19, SYNTHIA_16)


def label_space(num_classes: int) -> LabelSpace:
    """The space of a class count: 19 → Cityscapes trainIds, 16 → SYNTHIA's; otherwise `class0`, `class1`, …"""
    for space in KNOWN_SPACES:
        if space.num_classes == num_classes:
            return space
    return LabelSpace(f"generic{num_classes}", tuple(f"class{i}" for i in range(num_classes)))
