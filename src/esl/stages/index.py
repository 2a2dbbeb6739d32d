"""One validated index per split (rule `index`): list the split's samples (`esl.io.layouts.list_samples`), check that
every file exists and decodes (`esl.io.images.check_samples`, its warnings in the log: images whose size differs from
their label's, grayscale images; and labels without their image, `esl.io.layouts.labels_without_image`) and write
`index/{split}.csv` (name, image, label).

The rule's param `fingerprint` (`esl.io.layouts.fingerprint`: names, sizes and mtimes of the split's files) only
makes Snakemake re-run the job, and what follows, when the dataset changes; it is recorded in the index's provenance.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from pathlib import Path

from esl.io.images import check_samples
from esl.io.layouts import check_num_classes, labels_without_image, list_samples, write_index
from esl.io.provenance import provenance
from esl.stages.params import StageParams, input_files, optional, the_file

DATASET_KEYS = ("layout", "root", "split")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Params(StageParams):
    """Rule `index`: `dataset` = where the split lives (layout, root, split, list_file, conditions), the class count,
    and the split's `fingerprint` when the workflow gives one."""

    rule = "index"
    dataset: dict
    num_classes: int
    fingerprint: str | None = optional()

    def check(self) -> None:
        missing = [k for k in DATASET_KEYS if not isinstance(self.dataset, Mapping) or k not in self.dataset]
        if missing:
            raise ValueError(f"rule index: params dataset lacks {', '.join(missing)}")
        check_num_classes(self.dataset["layout"], self.num_classes)


def run(params: Params, inputs, outputs, log=None) -> None:
    """List, check and write the split's index; `inputs` (the toy manifest, if any) only count for provenance."""
    log = sys.stdout if log is None else log
    d = params.dataset
    conditions = d.get("conditions")  # acdc, dark_zurich: None lists the layout's default conditions
    samples = list_samples(d["layout"], d["root"], d["split"], list_file=d.get("list_file"), conditions=conditions)
    check_samples(d["layout"], samples, params.num_classes, log=log)
    orphans = labels_without_image(d["layout"], d["root"], d["split"], conditions=conditions)
    if orphans:
        print(
            f"warning: {len(orphans)} label file(s) without an image, not indexed (restore the image or delete the"
            f" label), e.g. {orphans[0]}",
            file=log,
        )
    out = the_file(outputs)
    write_index(samples, out, provenance(params.as_dict(), input_files(inputs)))
    print(f"{Path(out).stem}: {len(samples)} samples from {d['root']} ({d['layout']})", file=log)
    if params.fingerprint is not None:
        print(f"dataset fingerprint {params.fingerprint} (names, sizes, mtimes: a change re-runs this job)", file=log)
