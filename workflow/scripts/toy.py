"""Generate the toy domain pair (PNG files + manifest.csv, the manifest written last).

The design (`toy.design` of the config, optional; the toy default when absent) comes from the rule's `design` param,
or else from a `design` key of its `toy` param.
"""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl.toy import ToyDesign, generate_toy

toy = dict(snakemake.params.toy)
design = toy.pop("design", None)
design = snakemake.params.get("design", design)
summary = generate_toy(**toy, design=ToyDesign.from_dict(design or {}))
print(summary)
