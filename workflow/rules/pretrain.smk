# Source pretraining of DeepLabv2 (or a given checkpoint, e.g. ADVENT's released model). Outputs: model.pt and, with
# pretrain.snapshot_every, snapshots/iter_{i:06d}.pt (staged beside the resumable state while training runs).


rule pretrain:
    input:
        source=f"{RESULTS}/index/source_train.csv",
        # MinEnt/AdvEnt also see the (unlabelled) target images; source-only does not depend on them.
        target=(
            f"{RESULTS}/index/target_train.csv"
            if config["pretrain"]["method"] != "source_only"
            else []
        ),
        # A given model (config pretrain.checkpoint, e.g. ADVENT's released one): a new file re-runs what follows.
        checkpoint=config["pretrain"].get("checkpoint") or [],
    output:
        **named_snapshot_paths("pretrain"),
        model=f"{RUN}pretrain/model.pt",
        # the training curve: iteration, lr, each loss term, images/s (header only for a given checkpoint)
        metrics=f"{RUN}pretrain/metrics.csv",
    log:
        f"{RUN_LOGS}/pretrain.log",
    # With --cache and $SNAKEMAKE_OUTPUT_CACHE set, experiments with the same pretraining settings and data share one
    # model (docs/CLUSTER.md). The key hashes this script, the params and a given checkpoint file, plus the upstream
    # jobs' scripts and params (not their output files, not the experiment name); "omit-software": not the conda env.
    cache: "omit-software"
    conda:
        ENV
    threads: 2
    resources:
        gpu=config["pretrain"].get("gpus", 1),  # > 1: DistributedDataParallel under torchrun
        mem_mb=8000,
        runtime=24 * 60,
    params:
        model=model_params(),
        train=lambda wc: train_params("pretrain", wc.seed_dir),  # config seeds: the run's seed
        source=input_params("source"),
        target=(
            input_params("target")
            if config["pretrain"]["method"] != "source_only"
            else None
        ),
    message:
        "Pretraining on the source domain ({params.train[method]})"
    script:
        "../scripts/pretrain.py"
