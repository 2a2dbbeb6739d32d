#!/usr/bin/env bash
# The whole default pipeline on the embedded toy domain pair, then the HTML report.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/setup.sh
.venv/bin/snakemake --cores "${CORES:-all}" "$@"
.venv/bin/snakemake --report results/toy/report.html
echo
.venv/bin/python -c "from esl.io.tables import read_csv; t = read_csv('results/toy/summary.csv'); \
print(t[['model', 'mIoU', 'mIoU_best', 'best_iter', 'mIoU_selected', 'selected_iter', 'pl_precision', 'pl_coverage']]\
.to_string(index=False))"
echo "demo finished in $(( $(date +%s) - start )) s; report: results/toy/report.html"
