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
* ``mapillary`` (Mapillary Vistas v1.2): ``{root}/{split}/images/*.jpg``; labels ``{root}/{split}/labels/*.png`` (or
  ``{root}/{split}/v1.2/labels/*.png``, as the v2.0 release ships them), same stem, label ids 0..65 (palette PNGs);
  splits ``training``/``validation`` labelled, any other (``testing``) listed without labels. 7 classes only.
* ``acdc``: ``{root}/rgb_anon/{condition}/{split}/{sequence}/*_rgb_anon.png``; labels
  ``{root}/gt/{condition}/{split}/{sequence}/*_gt_labelTrainIds.png`` (else ``*_gt_labelIds.png``); conditions fog,
  night, rain, snow; splits ``train``/``val`` labelled, any other (``test``, ``*_ref``) listed without labels.
* ``dark_zurich``: ``{root}/rgb_anon/{split}/{condition}/{sequence}/*_rgb_anon.png``; labels
  ``{root}/gt/{split}/{condition}/{sequence}/*_gt_labelTrainIds.png`` (else ``*_gt_labelIds.png``); conditions day,
  night, twilight (default night); split ``val`` labelled, any other (``train``, ``test``) listed without labels.

``acdc`` and ``dark_zurich`` list the union of the `conditions` asked for (``CONDITIONS``; default
``DEFAULT_CONDITIONS``); a sample's name is its file stem without ``_rgb_anon``, unique across conditions.

Label space: ``read_label(..., num_classes=19)`` returns Cityscapes trainIds; ``num_classes=16`` returns the 16 classes
shared with SYNTHIA (``CLASS_NAMES_16``), ``num_classes=7`` the 7 Mapillary classes (``CLASS_NAMES_7``).
``gta5``/``cityscapes``/``acdc``/``dark_zurich`` are converted 19 → 16 with ``to_16_classes`` and 19 → 7 with
``to_7_classes``; ``synthia`` 16 → 19 with ``to_19_classes`` and its ids → 7 with ``SYNTHIA_ID_TO_7``; ``mapillary``
ids → 7 with ``MAPILLARY_TO_7``; ``trainids`` labels are taken as they are, in any class count.

``fingerprint`` is the cheap state of a split (names, sizes and mtimes of the files its index would list) that the
workflow gives the rule ``index`` as a param, so that a changed, added or deleted file re-indexes the split. This
module imports only the standard library at module level: the workflow's Snakemake process imports it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path


class DatasetError(ValueError):
    """A dataset that is missing, incomplete or not encoded as its layout says; the message is one line."""


@dataclass(frozen=True)
class Sample:
    name: str  # unique in the split: the file stem (cityscapes: the stem without `_leftImg8bit`)
    image: str
    label: str | None


# The class count each layout's labels are natively expressed in; the workflow's `data.num_classes` chooses the space.
NUM_CLASSES = {
    "trainids": 19,
    "gta5": 19,
    "synthia": 16,
    "cityscapes": 19,
    "mapillary": 7,
    "acdc": 19,
    "dark_zurich": 19,
}


LAYOUTS = tuple(NUM_CLASSES)


# The spaces a layout's labels can be read in (`trainids`: any count 1..255, as they are).
_SPACES = {"mapillary": (7,)}
_SPACE_NAMES = {19: "19 (trainIds)", 16: "16 (SYNTHIA classes)", 7: "7 (Mapillary classes)"}


# The weather/illumination sub-folders of the layouts that have them, and those listed when none are asked for.
CONDITIONS = {"acdc": ("fog", "night", "rain", "snow"), "dark_zurich": ("day", "night", "twilight")}
DEFAULT_CONDITIONS = {"acdc": CONDITIONS["acdc"], "dark_zurich": ("night",)}


# The splits whose labels ship; the other splits of these layouts are listed without labels.
LABELLED_SPLITS = {"mapillary": ("training", "validation"), "acdc": ("train", "val"), "dark_zurich": ("val",)}


def check_num_classes(layout: str, num_classes: int) -> None:
    """Fail unless `layout` can give labels in a `num_classes`-class space."""
    _check_layout(layout)
    if layout == "trainids":
        if not 1 <= int(num_classes) <= 255:
            raise DatasetError(f"layout trainids: num_classes must be in 1..255, got {num_classes}")
        return
    spaces = _SPACES.get(layout, (19, 16, 7))
    if num_classes not in spaces:
        names = [_SPACE_NAMES[c] for c in spaces]
        allowed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        raise DatasetError(f"layout {layout}: num_classes must be {allowed}, got {num_classes}")


def conditions_of(layout: str, conditions=None) -> tuple[str, ...]:
    """The conditions a split of `layout` is listed over: `conditions` (checked) or the layout's default; () for a
    layout without conditions (for which `conditions` must be None or empty)."""
    _check_layout(layout)
    if layout not in CONDITIONS:
        if conditions:
            raise DatasetError(
                f"layout {layout} has no conditions (got {', '.join(map(str, conditions))}); leave"
                " data.target.conditions out"
            )
        return ()
    if conditions is None:
        return DEFAULT_CONDITIONS[layout]
    conditions = [conditions] if isinstance(conditions, str) else list(conditions)
    known = CONDITIONS[layout]
    if not conditions:
        raise DatasetError(f"layout {layout}: conditions is empty; give some of {', '.join(known)}")
    for c in conditions:
        if c not in known:
            raise DatasetError(f"layout {layout}: unknown condition {c!r}; expected some of {', '.join(known)}")
    if len(set(conditions)) != len(conditions):
        raise DatasetError(f"layout {layout}: a condition is given twice in {', '.join(conditions)}")
    return tuple(conditions)


def _labelled(layout: str, split: str) -> bool:
    return split in LABELLED_SPLITS[layout] if layout in LABELLED_SPLITS else True


def _check_layout(layout: str) -> None:
    if layout not in NUM_CLASSES:
        raise DatasetError(f"unknown dataset layout {layout!r}; expected one of {', '.join(LAYOUTS)}")


def _require_dir(path: Path, layout: str, what: str) -> None:
    if not path.is_dir():
        raise DatasetError(f"{path}: {what} folder not found (layout {layout})")


def _pngs(folder: Path, suffix: str = ".png") -> list[Path]:
    # DirEntry.is_file() follows symlinks like Path.is_file() but needs no stat call where the file system gives types
    with os.scandir(folder) as entries:
        return [folder / e.name for e in entries if e.name.endswith(suffix) and e.is_file()]


def _flat_split(layout: str, split: str, list_file) -> None:
    if split not in ("all", "train") and list_file is None:
        raise DatasetError(
            f"layout {layout} has one split: split must be 'all' or 'train' (got {split!r}) or a list file"
        )


# The image file endings of ACDC and Dark Zurich (the reference images of ACDC's `*_ref` splits: `_rgb_ref_anon`).
_ANON_SUFFIXES = ("_rgb_anon.png", "_rgb_ref_anon.png")
_GT_SUFFIXES = ("_gt_labelTrainIds.png", "_gt_labelIds.png")


def _condition_dirs(layout: str, root: Path, split: str, condition: str) -> tuple[Path, Path, str]:
    """(image folder, label folder, their path below `rgb_anon/` and `gt/`) of one condition of a split."""
    rel = f"{condition}/{split}" if layout == "acdc" else f"{split}/{condition}"
    return root / "rgb_anon" / rel, root / "gt" / rel, rel


def _mapillary_label_dirs(root: Path, split: str) -> tuple[Path, Path]:
    """The label folders a Mapillary split may have: the v2.0 release's `v1.2/labels`, else v1.2's own `labels`."""
    return root / split / "v1.2" / "labels", root / split / "labels"


def _candidates(layout: str, root: Path, split: str, list_file, with_labels: bool, conditions=None):
    """(name, image path, list keys, label candidates) for every image of the split, plus the image folder; no label
    candidates for an unlabelled split (`LABELLED_SPLITS`)."""
    out = []
    with_labels = with_labels and _labelled(layout, split)
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
    elif layout == "mapillary":
        _require_dir(root / split, layout, f"split '{split}'")
        img_dir, lab_dirs = root / split / "images", _mapillary_label_dirs(root, split)
        _require_dir(img_dir, layout, "image")
        if with_labels and not any(d.is_dir() for d in lab_dirs):
            raise DatasetError(f"{lab_dirs[-1]}: label folder not found (layout {layout}; nor {lab_dirs[0]})")
        for p in _pngs(img_dir, ".jpg"):
            labels = tuple(d / f"{p.stem}.png" for d in lab_dirs) if with_labels else ()
            out.append((p.stem, p, (p.name, f"images/{p.name}", f"{split}/images/{p.name}"), labels))
    elif layout in ("acdc", "dark_zurich"):
        for condition in conditions_of(layout, conditions):
            cond_img, cond_lab, rel = _condition_dirs(layout, root, split, condition)
            _require_dir(cond_img, layout, f"image (condition {condition}, split {split})")
            if with_labels:
                _require_dir(cond_lab, layout, f"label (condition {condition}, split {split})")
            for seq in sorted(d for d in cond_img.iterdir() if d.is_dir()):
                for p in _pngs(seq, ".png"):
                    suffix = next((x for x in _ANON_SUFFIXES if p.name.endswith(x)), None)
                    if suffix is None:
                        continue
                    stem = p.name[: -len(suffix)]
                    keys = (
                        p.name,
                        f"{seq.name}/{p.name}",
                        f"{rel}/{seq.name}/{p.name}",
                        f"{rel}/{seq.name}/{stem}",
                        f"rgb_anon/{rel}/{seq.name}/{p.name}",
                    )
                    labels = tuple(cond_lab / seq.name / f"{stem}{x}" for x in _GT_SUFFIXES) if with_labels else ()
                    out.append((stem, p, keys, labels))
        img_dir = root / "rgb_anon"
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


def _select(layout: str, root, split: str, list_file, with_labels: bool, conditions=None):
    """The candidates (name, image, list keys, label candidates) of the split's samples, sorted by name or in
    list-file order, and the image folder; a `DatasetError` for a missing folder, an unknown list entry, no images."""
    _check_layout(layout)
    conditions_of(layout, conditions)
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root not found (layout {layout})")
    cands, img_dir = _candidates(layout, root, split, list_file, with_labels, conditions)
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
    return chosen, img_dir


def list_samples(
    layout: str, root, split: str, list_file=None, with_labels: bool = True, conditions=None
) -> list[Sample]:
    """The samples of a split, sorted by name (or in list-file order), each image checked to have its label (the
    samples of an unlabelled split, `LABELLED_SPLITS`, have none).

    `list_file`: a text file, one entry per line, restricting and ordering the split; an entry is a sample name, an
    image file name, or an image path relative to the image folder (or, for cityscapes, to `root`; for acdc and
    dark_zurich, to `rgb_anon/` or below it, with or without the `_rgb_anon.png` ending).
    `conditions`: the conditions of `acdc`/`dark_zurich` to list (`conditions_of`); None for the layout's default.
    """
    chosen, _img_dir = _select(layout, root, split, list_file, with_labels, conditions)
    if layout == "mapillary":
        _check_mapillary_config(Path(root))
    samples = []
    for name, image, _keys, labels in chosen:
        label = None
        if with_labels and labels:
            label = next((p for p in labels if p.is_file()), None)
            if label is None:
                raise DatasetError(f"{image}: no label found (expected {labels[-1]}, layout {layout})")
        samples.append(Sample(name, str(image), None if label is None else str(label)))
    return samples


def _check_mapillary_config(root: Path) -> None:
    """The dataset's own label list (`config_v1.2.json`, else `config.json`, when shipped) must be the v1.2 list that
    `MAPILLARY_TO_7` is written for, in the same order."""
    from esl.io.labels import MAPILLARY_NAMES  # here: the module imports only the standard library (docstring)

    path = next((p for p in (root / "config_v1.2.json", root / "config.json") if p.is_file()), None)
    if path is None:
        return
    try:
        labels = json.loads(path.read_text())["labels"]
        names = [str(label["readable"]) for label in labels]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"{path}: cannot read its label list ({type(e).__name__}: {e})") from None
    if len(names) != len(MAPILLARY_NAMES):
        raise DatasetError(
            f"{path}: {len(names)} labels, expected the {len(MAPILLARY_NAMES)} of Mapillary Vistas v1.2 (layout"
            " mapillary reads v1.2 labels only)"
        )
    for i, (got, want) in enumerate(zip(names, MAPILLARY_NAMES)):
        if got.lower() != want.lower():
            raise DatasetError(f"{path}: label {i} is {got!r}, expected {want!r} (Mapillary Vistas v1.2 order)")


def labels_without_image(layout: str, root, split: str, conditions=None) -> list[str]:
    """The label files of a split whose image is missing (sorted): such a sample is not indexed at all, so an image
    deleted after its label was made shows only here (the index log warns with the count). [] where the split's
    folders are missing (`list_samples` reports those)."""
    _check_layout(layout)
    root = Path(root)
    pairs = []  # (label folder, label suffixes, image folder, image suffixes)
    if layout == "trainids":
        pairs.append((root / split / "labels", (".png",), root / split / "images", ".png"))
    elif layout in ("gta5", "synthia"):
        img_dir = root / ("images" if layout == "gta5" else "RGB")
        pairs.append((root / ("labels" if layout == "gta5" else "GT/LABELS"), (".png",), img_dir, ".png"))
    elif layout == "mapillary":
        for lab_dir in _mapillary_label_dirs(root, split):
            pairs.append((lab_dir, (".png",), root / split / "images", ".jpg"))
    elif layout in ("acdc", "dark_zurich"):
        for condition in conditions_of(layout, conditions):
            cond_img, cond_lab, _rel = _condition_dirs(layout, root, split, condition)
            if cond_lab.is_dir():
                for seq in sorted(d.name for d in os.scandir(cond_lab) if d.is_dir()):
                    pairs.append((cond_lab / seq, _GT_SUFFIXES, cond_img / seq, _ANON_SUFFIXES))
    else:
        img_root, lab_root = root / "leftImg8bit" / split, root / "gtFine" / split
        if lab_root.is_dir():
            for city in sorted(d.name for d in os.scandir(lab_root) if d.is_dir()):
                suffixes = ("_gtFine_labelTrainIds.png", "_gtFine_labelIds.png")
                pairs.append((lab_root / city, suffixes, img_root / city, "_leftImg8bit.png"))
    orphans = []
    for lab_dir, suffixes, img_dir, img_suffix in pairs:
        if not lab_dir.is_dir():
            continue
        images = set(os.listdir(img_dir)) if img_dir.is_dir() else set()
        img_suffixes = (img_suffix,) if isinstance(img_suffix, str) else img_suffix
        for name in sorted(os.listdir(lab_dir)):
            suffix = next((x for x in suffixes if name.endswith(x)), None)
            if suffix is not None and not any(name[: -len(suffix)] + x in images for x in img_suffixes):
                orphans.append(str(lab_dir / name))
    return orphans


def fingerprint(layout: str, root, split: str, list_file=None, manifest=None, conditions=None) -> str:
    """A short hash of the state of a split: for every image and label its index would list, the path (relative to
    `root`), size and mtime (ns), and the list file's contents. Cheap (one directory listing and a stat per file, no
    file contents read), so the workflow computes it at every start (rule `index`'s param `fingerprint`).

    `manifest`: data that a generator wrote (the toy: `{toy.root}/manifest.csv`, written last, `image`/`label` paths
    relative to its folder). The fingerprint then leaves out the mtimes of files not newer than the manifest and is
    the same before the data exist (no manifest yet) as after their generation, whatever the time and place they were
    written; a file edited, added or deleted since changes it. A split that cannot be listed (e.g. a missing folder)
    gets the hash of the error, which the index job then reports. `conditions`: as for `list_samples`."""
    root = Path(root)
    entries: list = []
    if list_file is not None:
        try:
            entries.append(["list file", hashlib.sha256(Path(list_file).read_bytes()).hexdigest()])
        except OSError as e:
            entries.append(["list file", str(list_file), e.strerror or type(e).__name__])
    since, expected = None, None
    if manifest is not None:
        manifest = Path(manifest)
        try:
            since = manifest.stat().st_mtime_ns
        except OSError:
            return _digest(entries)  # not generated yet: the same as when it is, unchanged
        expected = _manifest_files(manifest, root)
    try:
        chosen, _img_dir = _select(layout, root, split, list_file, with_labels=True, conditions=conditions)
    except DatasetError as e:
        return _digest([*entries, ["error", str(e)]])
    present = set()
    for _name, image, _keys, labels in chosen:
        # the image, and the first label candidate found (else the last one, as missing): what list_samples takes
        found = [(image, _stat(image))]
        if labels:
            found.append(next(((p, st) for p in labels if (st := _stat(p)) is not None), (labels[-1], None)))
        for path, st in found:
            rel = _rel(path, root)
            if st is None:
                entries.append([rel, "missing"])
                continue
            present.add(rel)
            if since is None or st.st_mtime_ns > since:
                entries.append([rel, st.st_size, st.st_mtime_ns])
    if expected is not None:
        scope = [_rel(d, root) + "/" for d in _split_folders(layout, root, split, conditions)]
        mine = {p for p in expected if any(p.startswith(s) for s in scope)}
        entries += [[p, "missing"] for p in mine - present] + [[p, "not generated"] for p in present - mine]
    return _digest(entries)


def _stat(path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _digest(entries) -> str:
    return hashlib.sha256(json.dumps(sorted(entries, key=str)).encode()).hexdigest()[:16]


def _rel(path, root: Path) -> str:
    path, top = str(path), str(root).rstrip(os.sep) + os.sep
    # the files listed under root start with it (os.path.relpath is slow at 50,000 calls)
    rel = path[len(top) :] if path.startswith(top) else os.path.relpath(path, root)
    return rel.replace(os.sep, "/")


def _split_folders(layout: str, root: Path, split: str, conditions=None) -> tuple[Path, ...]:
    if layout in ("trainids", "mapillary"):
        return (root / split,)
    if layout in ("acdc", "dark_zurich"):
        return tuple(d for c in conditions_of(layout, conditions) for d in _condition_dirs(layout, root, split, c)[:2])
    if layout == "gta5":
        return (root / "images", root / "labels")
    if layout == "synthia":
        return (root / "RGB", root / "GT/LABELS")
    return (root / "leftImg8bit" / split, root / "gtFine" / split)


def _manifest_files(manifest: Path, root: Path) -> set[str]:
    """The `image` and `label` files of a generator's manifest, relative to `root`."""
    with open(manifest, newline="") as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        files = [r[k] for r in rows for k in ("image", "label") if r.get(k)]
    return {_rel(manifest.parent / p, root) for p in files}


def write_index(samples, path, prov: dict) -> None:
    """Write samples as a CSV `name,image,label` (an empty label for unlabelled samples), with provenance."""
    import pandas as pd  # here, not at module level: see the module's docstring

    from esl.io.tables import write_csv

    df = pd.DataFrame(
        [(s.name, s.image, "" if s.label is None else s.label) for s in samples], columns=["name", "image", "label"]
    )
    write_csv(df, path, prov)


def read_index(path) -> list[Sample]:
    from esl.io.tables import read_csv

    df = read_csv(path, dtype=str, keep_default_na=False)
    missing = {"name", "image", "label"} - set(df.columns)
    if missing:
        raise DatasetError(f"{path}: not a sample index (missing column(s) {', '.join(sorted(missing))})")
    return [Sample(n, i, lab or None) for n, i, lab in zip(df["name"], df["image"], df["label"])]
