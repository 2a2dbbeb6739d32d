"""The target domain's appearance: texture, lighting, optional fog, blur and sensor noise, scaled by the shift."""

from __future__ import annotations

import cv2
import numpy as np

from esl.toy.design import BUILDING, ROAD, SIDEWALK, ToyDesign


def shift_appearance(rgb: np.ndarray, label: np.ndarray, rng, shift: float, design: ToyDesign) -> np.ndarray:
    """Lighting, texture, blur and noise of the target domain, scaled by `shift` (0 leaves `rgb` unchanged)."""
    if shift <= 0:
        return rgb
    h, w = label.shape
    img = rgb.astype(np.float32)
    # texture: a fine random pattern on road, sidewalk and buildings
    tex = rng.normal(0.0, 1.0, (h, w)).astype(np.float32)
    tex = cv2.GaussianBlur(tex, (0, 0), 0.7) * 2.0
    mask = np.isin(label, (ROAD, SIDEWALK, BUILDING)).astype(np.float32)
    img += (design.texture * shift * tex * mask)[..., None]
    # lighting: contrast, brightness, gamma, vertical gradient
    contrast = 1.0 - shift * rng.uniform(0.0, 0.15)
    brightness = shift * rng.uniform(-8, 8)
    img = (img - 128.0) * contrast + 128.0 + brightness
    gamma = 1.0 + shift * rng.uniform(-0.15, 0.15)
    img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** gamma
    g = shift * rng.uniform(-0.12, 0.12)
    ramp = 1.0 - g * np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]  # lighter or darker towards the bottom
    img *= ramp
    if design.fog > 0:  # far (upper) rows lose contrast towards the fog colour, as in Foggy Cityscapes
        profile = 1.0 - design.fog_slope * np.linspace(0.0, 1.0, h, dtype=np.float32)
        fog = design.fog * min(shift, 1.0) * profile[:, None, None]
        img = (1.0 - fog) * img + fog * np.asarray(design.fog_rgb, np.float32)
    # optics and sensor
    img = cv2.GaussianBlur(img, (0, 0), 0.2 + design.blur * min(shift, 1.0) * rng.uniform(0.7, 1.3))
    img += rng.normal(0.0, design.noise * shift, img.shape).astype(np.float32)
    return img
