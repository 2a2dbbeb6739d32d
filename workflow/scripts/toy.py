"""Generate the toy domain pair (PNG files + manifest.csv, the manifest written last)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl.toy import generate_toy

summary = generate_toy(**snakemake.params.toy)
print(summary)
