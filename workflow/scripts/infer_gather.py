"""Inference shards of one model -> infer/{model}.h5, identical to an unsharded run's (provenance aside)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl import datasets
from esl.h5io import provenance
from esl.shards import gather_h5

names = [s.name for s in datasets.read_index(snakemake.input.index)]
prov = provenance(dict(snakemake.params.items()), snakemake.input)
n = gather_h5(snakemake.input.shards, snakemake.output[0], prov, expected_names=names)
print(f"gathered {len(snakemake.input.shards)} shards: {n} images")
