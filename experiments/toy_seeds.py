"""Run the toy default with several seeds and print mean ± std of each summary row (mIoU, pseudo-label quality).

Usage:

    .venv/bin/python experiments/toy_seeds.py [--seeds 0 1 2] [--cores 2] [--workdir DIR] [--methods esl mpsl nolabels]

Each seed s sets toy.seed, pretrain.seed and selftrain.seed to s (new data, new initialisation, new data order) and
runs in its own working directory, so the runs share nothing. Takes about one demo run per seed (plus one
self-training per extra method). `--methods` replaces `pseudo_labels.methods`; with `nolabels` (the control: target
images, no target label) it also prints each method's gain over the control. With snapshots (`*.snapshot_every`,
on in the toy default) it prints how far the label-free `selected` snapshot lands from the target-val `best` and from
the `final` model.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from esl.io.tables import read_csv


def run_seed(seed: int, workdir: Path, cores: int, methods=None) -> pd.DataFrame:
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["experiment"] = f"toy_seed{seed}"
    if methods:
        config["pseudo_labels"]["methods"] = list(methods)
    config["toy"]["seed"] = config["pretrain"]["seed"] = config["selftrain"]["seed"] = seed
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml"]
    subprocess.run([*cmd, "--cores", str(cores), "-q"], cwd=workdir, check=True)
    table = read_csv(workdir / f"results/toy_seed{seed}/summary.csv")
    table.insert(0, "seed", seed)
    print(f"seed {seed}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return table


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--methods", nargs="+", default=None, help="pseudo_labels.methods (default: the config's)")
    args = ap.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="esl-seeds-"))
    tables = pd.concat(
        [run_seed(s, root / f"seed{s}", args.cores, args.methods) for s in args.seeds], ignore_index=True
    )
    cols = ["mIoU", "pl_precision", "pl_coverage"]
    per_seed = tables.pivot(index="seed", columns="model", values="mIoU")
    order = list(dict.fromkeys(tables["model"]))
    print("mIoU per seed (target val, %):")
    print(per_seed[order].to_string())
    stats = tables.groupby("model", sort=False)[cols].agg(["mean", "std"])
    print(f"\nmean ± std over seeds {args.seeds}:")
    for model, row in stats.iterrows():
        parts = [f"{c} {row[(c, 'mean')]:.2f} ± {row[(c, 'std')]:.2f}" for c in cols if pd.notna(row[(c, "mean")])]
        print(f"  {model:12s} " + ", ".join(parts))
    gains = per_seed[[m for m in order if m != "pretrain"]].sub(per_seed["pretrain"], axis=0)
    print(
        "\ngain over pretrain (points), mean ± std: "
        + json.dumps({m: f"{gains[m].mean():+.2f} ± {gains[m].std():.2f}" for m in gains.columns}, ensure_ascii=False)
    )
    if "mIoU_selected" in tables:
        print("\nmodel choice (target-val mIoU of the final, best and selected snapshots; iterations in brackets):")
        for seed, rows in tables.groupby("seed"):
            for _, r in rows[rows["best_iter"].notna()].iterrows():
                print(
                    f"  seed {seed} {r['model']:12s} final {r['mIoU']:.2f}  best {r['mIoU_best']:.2f} "
                    f"[{int(r['best_iter'])}]  selected {r['mIoU_selected']:.2f} [{int(r['selected_iter'])}]"
                )
        rows = tables[tables["best_iter"].notna()]
        d_best = rows["mIoU_selected"] - rows["mIoU_best"]
        d_final = rows["mIoU_selected"] - rows["mIoU"]
        config = yaml.safe_load((REPO / "config/config.yaml").read_text())
        final_iter = rows["model"].map(lambda m: config["pretrain" if m == "pretrain" else "selftrain"]["iters"])
        print(
            f"selected − best: {d_best.mean():+.2f} ± {d_best.std():.2f} (range {d_best.min():+.2f} .. "
            f"{d_best.max():+.2f}); selected − final: {d_final.mean():+.2f} ± {d_final.std():.2f} (range "
            f"{d_final.min():+.2f} .. {d_final.max():+.2f}); {len(rows)} models × seeds; the selected snapshot is "
            f"the final model in {int((rows['selected_iter'] == final_iter).sum())}, the best one in "
            f"{int((rows['selected_iter'] == rows['best_iter']).sum())}"
        )
    controls = [m for m in order if m.startswith("nolabels_")]
    if controls:
        over = {
            m: per_seed[m] - per_seed[f"nolabels_{m.rsplit('_', 1)[1]}"]
            for m in order
            if m != "pretrain" and m not in controls
        }
        print(
            "gain over the nolabels control of the same round (points), mean ± std: "
            + json.dumps({m: f"{g.mean():+.2f} ± {g.std():.2f}" for m, g in over.items()}, ensure_ascii=False)
        )


if __name__ == "__main__":
    main()
