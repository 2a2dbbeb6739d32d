"""Label spaces: the classes a model predicts, their names, the id maps of the datasets, and the colour palette.

Every dataset layout is read into one of these spaces (255 = ignore everywhere):

* `CITYSCAPES_19`: the 19 Cityscapes trainIds (GTA5, Cityscapes, the toy);
* `SYNTHIA_16`: the 16 classes SYNTHIA shares with Cityscapes (the 19 without terrain, truck, train), with the
  usual mIoU-13 over the 13 without wall, fence, pole;
* `MAPILLARY_7`: the 7 classes of valeoai/ESL's Mapillary Vistas target (flat, construction, object, nature, sky,
  human, vehicle): Vistas v1.2's 66 label ids grouped by `MAPILLARY_TO_7`, the 19 trainIds by `TRAINID_TO_7` and the
  SYNTHIA class ids by `SYNTHIA_ID_TO_7`, the reference's tables (docs/TARGETS.md).

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


# The 7 classes of valeoai/ESL's Mapillary target (`advent/dataset/mapillary.py`, `classes_ids`), in id order.
CLASS_NAMES_7 = ("flat", "construction", "object", "nature", "sky", "human", "vehicle")
FLAT, CONSTRUCTION, OBJECT, NATURE, SKY, HUMAN, VEHICLE = range(7)


# 19 trainIds → 7 classes, as the reference's GTA5/SYNTHIA loaders with `num_classes=7` (`advent/dataset/gta5.py`):
# note terrain → flat (not nature), as there. Every trainId has a class.
TRAINID_TO_7 = {
    0: FLAT,  # road
    1: FLAT,  # sidewalk
    2: CONSTRUCTION,  # building
    3: CONSTRUCTION,  # wall
    4: CONSTRUCTION,  # fence
    5: OBJECT,  # pole
    6: OBJECT,  # traffic light
    7: OBJECT,  # traffic sign
    8: NATURE,  # vegetation
    9: FLAT,  # terrain
    10: SKY,
    11: HUMAN,  # person
    12: HUMAN,  # rider
    13: VEHICLE,  # car
    14: VEHICLE,  # truck
    15: VEHICLE,  # bus
    16: VEHICLE,  # train
    17: VEHICLE,  # motorcycle
    18: VEHICLE,  # bicycle
}


# SYNTHIA class id (R channel) → 7 classes (`advent/dataset/synthia.py`, `num_classes=7`): the 19 classes' SYNTHIA ids,
# terrain (16), truck (18) and train (20) included, which the 16-class space ignores.
SYNTHIA_ID_TO_7 = {
    3: FLAT,  # road
    4: FLAT,  # sidewalk
    2: CONSTRUCTION,  # building
    21: CONSTRUCTION,  # wall
    5: CONSTRUCTION,  # fence
    7: OBJECT,  # pole
    15: OBJECT,  # traffic light
    9: OBJECT,  # traffic sign
    6: NATURE,  # vegetation
    16: FLAT,  # terrain
    1: SKY,
    10: HUMAN,  # person
    17: HUMAN,  # rider
    8: VEHICLE,  # car
    18: VEHICLE,  # truck
    19: VEHICLE,  # bus
    20: VEHICLE,  # train
    12: VEHICLE,  # motorcycle
    11: VEHICLE,  # bicycle
}


# Mapillary Vistas v1.2: the 66 label ids (the order of the dataset's `config.json` "labels", `readable` names), each
# with its 7-class id or IGNORE. The grouping is valeoai/ESL's (`advent/dataset/mapillary.py`,
# `classes_mappings_mapillary_to_cityscapes`, which maps by these names), not Vistas' own categories: curb →
# construction, terrain → flat, nature = vegetation only (mountain, sand, snow, water ignored), object = poles, street
# lights, traffic lights, signs and sign frames, and pothole; the other objects (banner .. trash can), the animals and
# the void labels (car mount, ego vehicle, unlabeled) ignored.
MAPILLARY_LABELS = (
    ("Bird", IGNORE),
    ("Ground Animal", IGNORE),
    ("Curb", CONSTRUCTION),
    ("Fence", CONSTRUCTION),
    ("Guard Rail", CONSTRUCTION),
    ("Barrier", CONSTRUCTION),
    ("Wall", CONSTRUCTION),
    ("Bike Lane", FLAT),
    ("Crosswalk - Plain", FLAT),
    ("Curb Cut", FLAT),
    ("Parking", FLAT),
    ("Pedestrian Area", FLAT),
    ("Rail Track", FLAT),
    ("Road", FLAT),
    ("Service Lane", FLAT),
    ("Sidewalk", FLAT),
    ("Bridge", CONSTRUCTION),
    ("Building", CONSTRUCTION),
    ("Tunnel", CONSTRUCTION),
    ("Person", HUMAN),
    ("Bicyclist", HUMAN),
    ("Motorcyclist", HUMAN),
    ("Other Rider", HUMAN),
    ("Lane Marking - Crosswalk", FLAT),
    ("Lane Marking - General", FLAT),
    ("Mountain", IGNORE),
    ("Sand", IGNORE),
    ("Sky", SKY),
    ("Snow", IGNORE),
    ("Terrain", FLAT),
    ("Vegetation", NATURE),
    ("Water", IGNORE),
    ("Banner", IGNORE),
    ("Bench", IGNORE),
    ("Bike Rack", IGNORE),
    ("Billboard", IGNORE),
    ("Catch Basin", IGNORE),
    ("CCTV Camera", IGNORE),
    ("Fire Hydrant", IGNORE),
    ("Junction Box", IGNORE),
    ("Mailbox", IGNORE),
    ("Manhole", IGNORE),
    ("Phone Booth", IGNORE),
    ("Pothole", OBJECT),  # so in the reference (a flat surface defect; kept as it is)
    ("Street Light", OBJECT),
    ("Pole", OBJECT),
    ("Traffic Sign Frame", OBJECT),
    ("Utility Pole", OBJECT),
    ("Traffic Light", OBJECT),
    ("Traffic Sign (Back)", OBJECT),
    ("Traffic Sign (Front)", OBJECT),
    ("Trash Can", IGNORE),
    ("Bicycle", VEHICLE),
    ("Boat", VEHICLE),
    ("Bus", VEHICLE),
    ("Car", VEHICLE),
    ("Caravan", VEHICLE),
    ("Motorcycle", VEHICLE),
    ("On Rails", VEHICLE),
    ("Other Vehicle", VEHICLE),
    ("Trailer", VEHICLE),
    ("Truck", VEHICLE),
    ("Wheeled Slow", VEHICLE),
    ("Car Mount", IGNORE),
    ("Ego Vehicle", IGNORE),
    ("Unlabeled", IGNORE),
)
MAPILLARY_NAMES = tuple(name for name, _ in MAPILLARY_LABELS)
MAPILLARY_TO_7 = {i: c for i, (_, c) in enumerate(MAPILLARY_LABELS)}
MAPILLARY_MAX_ID = len(MAPILLARY_LABELS) - 1  # 65: v1.2 label ids are 0..65 (v2.0's 124 classes are another table)


# A 19-class trainId that stands for each of the 7 classes in pictures (its Cityscapes colour): road, building, pole,
# vegetation, sky, person, car.
CLASSES_7_SHOWN_AS_19 = (0, 2, 5, 8, 10, 11, 13)


def _lut(table: dict, size: int) -> np.ndarray:
    lut = np.full(size, IGNORE, dtype=np.uint8)
    for k, v in table.items():
        lut[k] = v
    return lut


_CITYSCAPES_LUT = _lut(CITYSCAPES_ID_TO_TRAINID, 256)
_SYNTHIA_LUT = _lut(SYNTHIA_ID_TO_16, 1 << 16)
_LUT_19_TO_16 = _lut({c19: c16 for c16, c19 in enumerate(CLASSES_16_OF_19)} | {IGNORE: IGNORE}, 256)
_LUT_16_TO_19 = _lut(dict(enumerate(CLASSES_16_OF_19)) | {IGNORE: IGNORE}, 256)
_LUT_19_TO_7 = _lut(TRAINID_TO_7 | {IGNORE: IGNORE}, 256)
_LUT_7_TO_19 = _lut(dict(enumerate(CLASSES_7_SHOWN_AS_19)) | {IGNORE: IGNORE}, 256)
_SYNTHIA_LUT_7 = _lut(SYNTHIA_ID_TO_7, 1 << 16)
_MAPILLARY_LUT = _lut(MAPILLARY_TO_7, 256)


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


def to_7_classes(trainid_label) -> np.ndarray:
    """19 trainIds → the 7 Mapillary classes (`TRAINID_TO_7`; 255 stays 255)."""
    return _convert(trainid_label, _LUT_19_TO_7, 19, "to_7_classes")


def mapillary_to_7_classes(label_ids) -> np.ndarray:
    """Mapillary Vistas v1.2 label ids (0..65) → the 7 classes (`MAPILLARY_TO_7`); any other value is refused."""
    label_ids = np.asarray(label_ids)
    bad = (label_ids < 0) | (label_ids > MAPILLARY_MAX_ID)
    if bad.any():
        raise ValueError(
            f"mapillary_to_7_classes: label id {label_ids[bad].flat[0]} outside the Mapillary Vistas v1.2 ids"
            f" 0..{MAPILLARY_MAX_ID}"
        )
    return _MAPILLARY_LUT[label_ids.astype(np.uint8)]


def shown_as_19(label, num_classes: int) -> np.ndarray:
    """A label map of the `num_classes` space as the trainIds whose Cityscapes colours picture it (16: SYNTHIA's
    classes; 7: `CLASSES_7_SHOWN_AS_19`; 19 and other counts as they are)."""
    if num_classes == 16:
        return to_19_classes(label)
    if num_classes == 7:
        return _convert(label, _LUT_7_TO_19, 7, "shown_as_19")
    return np.asarray(label)


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
MAPILLARY_7 = LabelSpace("mapillary7", CLASS_NAMES_7)
KNOWN_SPACES = (CITYSCAPES_19, SYNTHIA_16, MAPILLARY_7)


def label_space(num_classes: int) -> LabelSpace:
    """The space of a class count: 19 → Cityscapes trainIds, 16 → SYNTHIA's, 7 → Mapillary's; otherwise `class0`,
    `class1`, …"""
    for space in KNOWN_SPACES:
        if space.num_classes == num_classes:
            return space
    return LabelSpace(f"generic{num_classes}", tuple(f"class{i}" for i in range(num_classes)))


# Cityscapes trainId → label id of the 19 evaluated classes, as cityscapesScripts' `helpers/labels.py` lists them (the
# inverse of `CITYSCAPES_ID_TO_TRAINID`): the benchmark server scores `*_labelIds` PNGs, so a submission of 19-class
# predictions is written through this table (rule `export`).
TRAINID_TO_CITYSCAPES_ID = {
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
_TRAINID_TO_CITYSCAPES_ID_LUT = _lut(TRAINID_TO_CITYSCAPES_ID, 256)


def to_cityscapes_ids(trainid_label) -> np.ndarray:
    """19 trainIds (0..18) → Cityscapes label ids (uint8, `TRAINID_TO_CITYSCAPES_ID`); any other value, 255 included,
    is refused: a prediction has a class everywhere."""
    label = np.asarray(trainid_label)
    bad = (label < 0) | (label >= len(TRAINID_TO_CITYSCAPES_ID))
    if bad.any():
        raise ValueError(f"to_cityscapes_ids: value {label[bad].flat[0]} is not a trainId 0..18")
    return _TRAINID_TO_CITYSCAPES_ID_LUT[label.astype(np.uint8)]
