"""The snapshot a choice picks (best: target-val mIoU; selected: evaluate.selection, label-free)
-> chosen/{model}_{choice}.pt."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl.h5io import read_csv
from esl.snapshots import choose, copy_checkpoint

p = snakemake.params
table = read_csv(snakemake.input.table)
iteration = choose(table, p.choice, p.selection)
source = dict(zip(p.iterations, snakemake.input.candidates))[iteration]
if p.choice == "best":
    print(
        "WARNING: the model chosen on target-val labels (best) feeds training: target labels then shape the result"
        " (the reference's protocol, optimistic); 'selected' chooses without them"
    )
row = table[table["iteration"] == iteration].iloc[0]
print(f"{p.choice}: iteration {iteration} ({source}; mIoU {row['mIoU']}, target entropy {row['target_entropy']:.6f})")
copy_checkpoint(source, snakemake.output[0])
