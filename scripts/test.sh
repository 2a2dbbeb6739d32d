#!/usr/bin/env bash
# Install, lint (ruff, snakefmt, snakemake --lint) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
ruff check .
ruff format --check .
snakefmt --check Snakefile workflow/rules
snakemake --lint
python -m pytest "$@"
