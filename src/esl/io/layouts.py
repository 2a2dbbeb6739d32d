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
NUM_CLASSES = {"trainids": 19, "gta5": 19, "synthia": 16, "cityscapes": 19}


LAYOUTS = tuple(NUM_CLASSES)


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


def _select(layout: str, root, split: str, list_file, with_labels: bool):
    """The candidates (name, image, list keys, label candidates) of the split's samples, sorted by name or in
    list-file order, and the image folder; a `DatasetError` for a missing folder, an unknown list entry, no images."""
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
    return chosen, img_dir


def list_samples(layout: str, root, split: str, list_file=None, with_labels: bool = True) -> list[Sample]:
    """The samples of a split, sorted by name (or in list-file order), each image checked to have its label.

    `list_file`: a text file, one entry per line, restricting and ordering the split; an entry is a sample name, an
    image file name, or an image path relative to the image folder (or, for cityscapes, to `root`).
    """
    chosen, _img_dir = _select(layout, root, split, list_file, with_labels)
    samples = []
    for name, image, _keys, labels in chosen:
        label = None
        if with_labels:
            label = next((p for p in labels if p.is_file()), None)
            if label is None:
                raise DatasetError(f"{image}: no label found (expected {labels[-1]}, layout {layout})")
        samples.append(Sample(name, str(image), None if label is None else str(label)))
    return samples


def labels_without_image(layout: str, root, split: str) -> list[str]:
    """The label files of a split whose image is missing (sorted): such a sample is not indexed at all, so an image
    deleted after its label was made shows only here (the index log warns with the count). [] where the split's
    folders are missing (`list_samples` reports those)."""
    _check_layout(layout)
    root = Path(root)
    pairs = []  # (label folder, label suffixes, image folder, image suffix)
    if layout == "trainids":
        pairs.append((root / split / "labels", (".png",), root / split / "images", ".png"))
    elif layout in ("gta5", "synthia"):
        img_dir = root / ("images" if layout == "gta5" else "RGB")
        pairs.append((root / ("labels" if layout == "gta5" else "GT/LABELS"), (".png",), img_dir, ".png"))
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
        for name in sorted(os.listdir(lab_dir)):
            suffix = next((x for x in suffixes if name.endswith(x)), None)
            if suffix is not None and name[: -len(suffix)] + img_suffix not in images:
                orphans.append(str(lab_dir / name))
    return orphans


def fingerprint(layout: str, root, split: str, list_file=None, manifest=None) -> str:
    """A short hash of the state of a split: for every image and label its index would list, the path (relative to
    `root`), size and mtime (ns), and the list file's contents. Cheap (one directory listing and a stat per file, no
    file contents read), so the workflow computes it at every start (rule `index`'s param `fingerprint`).

    `manifest`: data that a generator wrote (the toy: `{toy.root}/manifest.csv`, written last, `image`/`label` paths
    relative to its folder). The fingerprint then leaves out the mtimes of files not newer than the manifest and is
    the same before the data exist (no manifest yet) as after their generation, whatever the time and place they were
    written; a file edited, added or deleted since changes it. A split that cannot be listed (e.g. a missing folder)
    gets the hash of the error, which the index job then reports."""
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
        chosen, _img_dir = _select(layout, root, split, list_file, with_labels=True)
    except DatasetError as e:
        return _digest([*entries, ["error", str(e)]])
    present = set()
    for _name, image, _keys, labels in chosen:
        # the image, and the first label candidate found (else the last one, as missing): what list_samples takes
        found = [(image, _stat(image))]
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
        scope = [_rel(d, root) + "/" for d in _split_folders(layout, root, split)]
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
    return os.path.relpath(path, root).replace(os.sep, "/")


def _split_folders(layout: str, root: Path, split: str) -> tuple[Path, ...]:
    if layout == "trainids":
        return (root / split,)
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
