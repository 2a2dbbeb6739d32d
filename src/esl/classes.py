"""Cityscapes trainId classes shared by every dataset layout."""

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
