"""A seeded toy domain pair of street-like scenes labelled with Cityscapes trainIds: the workflow's smoke test.

Both domains draw scenes of the same kind (sky, buildings with windows, trees and hedges, a road in perspective with
sidewalks, cars, poles with signs, persons, a few unlabelled objects). The source domain is a clean "game-like"
rendering: flat class colours with mild per-object variation, sharp edges, no noise. The target domain uses slightly
different object priors and an appearance shifted by `shift` (0 = the source appearance), each image by its own
strength drawn uniformly in (0.1, 1] × `shift`, so the target domain is a continuum from mildly to fully shifted:

* a palette change: every class colour moves towards a target palette in which several classes take colours close to
  *other* classes' source colours (vegetation turns autumn brown like source buildings, buildings turn blue-grey,
  the sky turns overcast grey, the sidewalk turns dark like the source road), so colour alone misleads while layout
  and shape still help;
* lighting: a per-image gamma, contrast and brightness change and a vertical illumination gradient;
* texture on road, sidewalk and buildings, Gaussian blur and Gaussian noise;
* optionally (`ToyDesign.fog` > 0; off in the default, used by experiments/toy_variants.py) fog that thins from the
  top row to none at the bottom.

Every colour, strength and prior is a field of `ToyDesign` (`design.py`; the defaults are the toy default), passed to
`generate_toy` (`generate.py`: splits, files, manifest), which draws with `scene.py` and shifts the target's
appearance with `appearance.py`. Every image has its own generator seeded by (seed, domain, split, index), so adding
images never changes earlier ones.
"""

from esl.toy.design import ToyDesign
from esl.toy.generate import generate_toy

__all__ = ["ToyDesign", "generate_toy"]
