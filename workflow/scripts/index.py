"""Rule `index`: list and validate one split of a dataset; write its index CSV (name, image, label)
(esl.stages.index)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl.stages.index import Params, run

run(Params.from_rule(snakemake.params), snakemake.input, snakemake.output)
