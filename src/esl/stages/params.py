"""What every stage's `Params` shares: a frozen dataclass built once from a rule's params and checked there.

A stage module defines

    @dataclass(frozen=True)
    class Params(StageParams):
        rule = "entropy"               # named in error messages
        size: tuple[int, int] | None
        ...
        def check(self): ...           # optional: one-line ValueError naming the config key

    def run(params: Params, inputs: Mapping[str, str], outputs: Mapping[str, str], log=None) -> None

and its workflow script is three lines: logging to `snakemake.log`, `Params.from_rule(snakemake.params)`,
`run(params, snakemake.input, snakemake.output)`. `inputs`/`outputs` are the rule's named files (anything with
`[name]`/`.get(name)`, e.g. a dict or Snakemake's lists); the library never imports Snakemake.

A param that only some jobs of a rule have (infer's `shard`) is declared `optional()`: `as_dict` leaves it out while
it is None, so the provenance of the other jobs records exactly the rule's params. `input_files` lists every input
(for provenance), `the_file` picks one output, `torch_device` applies the rule's threads and picks the device.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import ClassVar

OMIT_NONE = "esl_omit_none"  # field metadata: `as_dict` leaves the field out while it is None
INPUT_KEYS = ("layout", "size", "mean_bgr", "num_classes")  # `input_params(domain)` of workflow/rules/common.smk


@dataclasses.dataclass(frozen=True)
class StageParams:
    rule: ClassVar[str] = "stage"

    @classmethod
    def from_rule(cls, params) -> StageParams:
        """From a rule's named params (a mapping, or anything with `.items()`); unknown or missing names are refused
        in one line."""
        given = dict(params.items()) if hasattr(params, "items") else dict(params)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(given) - set(fields))
        if unknown:
            raise ValueError(f"rule {cls.rule}: unexpected params {unknown} (known: {sorted(fields)})")
        unset = dataclasses.MISSING
        required = {n for n, f in fields.items() if f.default is unset and f.default_factory is unset}
        missing = sorted(required - set(given))
        if missing:
            raise ValueError(f"rule {cls.rule}: missing params {missing}")
        return cls(**given)

    def __post_init__(self):
        self.check()

    def check(self) -> None:
        """Refuse impossible values with a one-line ValueError naming the config key (nothing by default)."""

    def as_dict(self) -> dict:
        """The params as the rule gave them (for provenance): `optional()` fields are left out while None."""
        out = dataclasses.asdict(self)
        for f in dataclasses.fields(self):
            if f.metadata.get(OMIT_NONE) and out[f.name] is None:
                del out[f.name]
        return out


def optional(default=None):
    """A field for a param the rule gives to some jobs only (absent from `as_dict` while None)."""
    return dataclasses.field(default=default, metadata={OMIT_NONE: True})


def named(files, name: str, default=None):
    """The file of a rule's input/output called `name` (`default` when absent or empty)."""
    value = files.get(name, default) if isinstance(files, Mapping) or hasattr(files, "get") else default
    return value if value not in ([], "", None) else default


def check_int(value, key: str, low: int = 0, none_ok: bool = False) -> None:
    """One line naming config `key` unless `value` is an integer >= `low` (or None, with `none_ok`)."""
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"config {key}={value!r} must be an integer >= {low}")


def check_input(rule: str, name: str, value) -> None:
    """One line unless the param `name` holds what turns a sample into a network input (layout, size, mean_bgr,
    num_classes)."""
    missing = [k for k in INPUT_KEYS if not isinstance(value, Mapping) or k not in value]
    if missing:
        raise ValueError(f"rule {rule}: params {name} lacks {', '.join(missing)}")


def input_files(files) -> list[str]:
    """Every file of a rule's input in order, for provenance: Snakemake's lists are flat already; a dict's values (a
    path, a list of paths or None) are flattened."""
    if isinstance(files, (str, os.PathLike)):
        return [str(files)]
    if isinstance(files, Mapping):
        out = []
        for value in files.values():
            if value is not None:
                out += [value] if isinstance(value, (str, os.PathLike)) else list(value)
        return [str(f) for f in out]
    return [str(f) for f in files]


def the_file(files, name: str | None = None):
    """The output called `name`, or a rule's only (first) one: `files[0]` of a list, the single value of a dict."""
    if name is not None:
        return files[name]
    if isinstance(files, (str, os.PathLike)):
        return files
    if isinstance(files, Mapping):
        (value,) = files.values()
        return value
    return files[0]


def torch_device(threads=None, device=None):
    """Apply the rule's `threads` (torch's intra-op threads) and resolve `device` (None: `esl.runtime.device`'s
    `auto`, CUDA when visible, else the CPU)."""
    import torch

    from esl.runtime.device import resolve_device

    if threads:
        torch.set_num_threads(int(threads))
    return resolve_device() if device is None else torch.device(device)
