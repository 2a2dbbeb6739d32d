"""List and validate one split of a dataset; write its index CSV (name, image, label)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl import datasets
from esl.h5io import provenance

d = snakemake.params.dataset
samples = datasets.list_samples(d["layout"], d["root"], d["split"], list_file=d.get("list_file"))
datasets.check_samples(d["layout"], samples, snakemake.params.num_classes, log=sys.stdout)
datasets.write_index(samples, snakemake.output[0], provenance(dict(snakemake.params.items()), snakemake.input))
print(f"{snakemake.wildcards.split}: {len(samples)} samples from {d['root']} ({d['layout']})")
