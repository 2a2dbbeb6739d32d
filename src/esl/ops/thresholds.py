"""Per-class threshold rules of the pseudo-label stage (`METHODS`), their parameters, and their application.

A rule ranks the values of one entropy-file map (`entropy` or `max_prob`) per predicted class: t_c = the value at
rank `rank_index(n_c, q)` of the ascending values (of the descending ones with `descending`), 0 where n_c = 0, then
`post` adjusts it in float32 (ESL's floor, MPSL's cap), and `keep` says which pixels keep their argmax
(`apply_thresholds`). A new threshold rule is one more entry in `METHODS`: the pseudo-label stage takes everything
from it (no code elsewhere names a method). The workflow's config accepts it once the schema lists its name and
parameters (`pseudo_labels.methods`; tests/test_pseudo_labels.py checks the schema against `METHODS`).

`class_thresholds` is the same exact rank selection over any streamed (values, classes) chunks (two passes of
`StreamingRank`); `class_thresholds_sorted` is its plain-sort reference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from esl.io.labels import IGNORE
from esl.ops.ranks import StreamingRank, rank_index


@dataclass(frozen=True)
class Method:
    """A per-class threshold rule.

    dataset: the entropy-file dataset the rule thresholds; q_key: the params key holding the rank fraction q;
    descending: count the rank from the largest value; post: (float32 thresholds, params) -> float32 thresholds;
    keep: "le" keeps value <= t, "ge" keeps value >= t, "none" keeps nothing (no thresholds are computed: NaN);
    defaults: every allowed parameter and its default.
    """

    dataset: str
    q_key: str | None
    descending: bool
    post: Callable[[np.ndarray, dict], np.ndarray]
    keep: str
    defaults: dict = field(default_factory=dict)

    def ranks(self, counts: np.ndarray, params: dict) -> np.ndarray:
        """(C,) ascending ranks to select given the pixels per class (-1 where a class has none)."""
        return ascending_ranks(counts, float(params[self.q_key]), self.descending)

    def thresholds(self, selected: np.ndarray, params: dict) -> np.ndarray:
        """float32 (C,) thresholds from the selected values (NaN where nothing was selected: 0), post-processed."""
        raw = np.nan_to_num(np.asarray(selected), nan=0.0).astype(np.float32)
        return np.asarray(self.post(raw, params), dtype=np.float32)


METHODS: dict[str, Method] = {
    "esl": Method(
        "entropy", "q", False, lambda t, p: np.maximum(t, np.float32(p["floor"])), "le", {"q": 0.5, "floor": 0.1}
    ),
    "mpsl": Method(
        "max_prob", "q", False, lambda t, p: np.minimum(t, np.float32(p["cap"])), "ge", {"q": 0.5, "cap": 0.9}
    ),
    # CBST (class-balanced self-training, Zou et al. ECCV 2018): t_c = the max-prob at the top-p fraction of class c's
    # pixels, i.e. x_desc[rank_index(n, p)] of the descending values; keep if max_prob >= t_c.
    "cbst": Method("max_prob", "p", True, lambda t, p: t, "ge", {"p": 0.2}),
    # the no-target-labels control: every pixel 255
    "nolabels": Method("entropy", None, False, lambda t, p: t, "none"),
}


def method_params(method: str, params: dict | None) -> dict:
    """The method's defaults overridden by `params`; unknown methods or keys raise ValueError."""
    if method not in METHODS:
        raise ValueError(f"unknown pseudo-label method {method!r} (known: {', '.join(METHODS)})")
    m = METHODS[method]
    params = dict(params or {})
    unknown = set(params) - set(m.defaults)
    if unknown:
        raise ValueError(f"method {method!r}: unknown parameters {sorted(unknown)} (allowed: {sorted(m.defaults)})")
    return {**m.defaults, **params}


def apply_thresholds(label: np.ndarray, values: np.ndarray, thresholds: np.ndarray, keep: str = "le") -> np.ndarray:
    """uint8 pseudo-labels: `label` where ``values <= thresholds[label]`` ("le") or ``>=`` ("ge"), else 255; all 255
    for "none".

    Labels outside [0, len(thresholds)) become 255 too.
    """
    if keep not in ("le", "ge", "none"):
        raise ValueError(f"keep must be 'le', 'ge' or 'none', got {keep!r}")
    label = np.asarray(label)
    values = np.asarray(values)
    if label.shape != values.shape:
        raise ValueError(f"label shape {label.shape} != values shape {values.shape}")
    if keep == "none":
        return np.full(label.shape, IGNORE, np.uint8)
    thresholds = np.asarray(thresholds)
    valid = (label >= 0) & (label < thresholds.size)
    t = thresholds[np.where(valid, label, 0)]
    kept = valid & ((values <= t) if keep == "le" else (values >= t))
    return np.where(kept, label, IGNORE).astype(np.uint8)


def ascending_ranks(counts: np.ndarray, q: float, descending: bool) -> np.ndarray:
    """(C,) 0-indexed ascending ranks `rank_index(n_c, q)` (from the top when `descending`), -1 where n_c == 0."""
    ranks = np.array([rank_index(n, q) for n in counts], dtype=np.int64)
    if descending:  # rank r counted from the top is ascending rank n - 1 - r
        ranks = np.where(ranks >= 0, counts - 1 - ranks, -1)
    return ranks


def class_thresholds(
    passes: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]],
    num_classes: int,
    q: float = 0.5,
    descending: bool = False,
    device=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class thresholds ``x[rank_index(n, q)]`` of the values of each class, exactly, in two streamed passes.

    `passes()` must yield the same (values, classes) chunks each time it is called. With `descending` the rank is
    counted from the largest value (ascending rank n - 1 - r). `device`: where the histograms are counted (None =
    NumPy; a torch device such as "cuda" = `torch.bincount` there, see `StreamingRank`); the same result either way.
    Returns (thresholds float64 (C,) holding exact float32 values, 0.0 where n == 0; counts int64 (C,)).
    """
    sr = StreamingRank(num_classes, device)
    for values, classes in passes():
        sr.add(values, classes)
    counts = sr.counts()
    sr.plan(ascending_ranks(counts, q, descending))
    for values, classes in passes():
        sr.add_second(values, classes)
    thresholds = np.nan_to_num(sr.result().astype(np.float64), nan=0.0)
    return thresholds, counts


def class_thresholds_sorted(
    values, classes, num_classes: int, q: float = 0.5, descending: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Reference for `class_thresholds`: a plain sort per class, same rule and same return values."""
    values = np.asarray(values, dtype=np.float32).ravel() + np.float32(0.0)  # -0.0 -> +0.0
    classes = np.asarray(classes).ravel()
    thresholds = np.zeros(num_classes, dtype=np.float64)
    counts = np.zeros(num_classes, dtype=np.int64)
    for c in range(num_classes):
        x = np.sort(values[classes == c])
        counts[c] = x.size
        r = rank_index(x.size, q)
        if r >= 0:
            thresholds[c] = x[x.size - 1 - r] if descending else x[r]
    return thresholds, counts
