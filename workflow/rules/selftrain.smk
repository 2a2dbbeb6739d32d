# Self-training on source labels and target pseudo-labels, one model per method and round.


rule selftrain:
    input:
        source=f"{RESULTS}/index/source_train.csv",
        target=f"{RESULTS}/index/target_train.csv",
        # from the previous round's model: shared by the seeds when that is a given pretrain.checkpoint
        pseudo_labels=lambda wc: (
            f"{at(previous_model(wc.method, wc.k), wc.seed_dir)}pseudo_labels/{wc.method}_r{wc.k}.h5"
        ),
        # selftrain.init_from: the final, label-free selected or target-val best pretrained model
        init=lambda wc: (
            chosen_checkpoint("pretrain", INIT_FROM, wc.seed_dir)
            if config["selftrain"]["init"] == "pretrained"
            else []
        ),
    output:
        **named_snapshot_paths("{method}_r{k}"),
        model=f"{RUN}selftrain/{{method}}_r{{k}}/model.pt",
        metrics=f"{RUN}selftrain/{{method}}_r{{k}}/metrics.csv",  # the training curve
    log:
        f"{RUN_LOGS}/selftrain_{{method}}_r{{k}}.log",
    conda:
        ENV
    threads: 2
    resources:
        gpu=config["selftrain"].get("gpus", 1),  # > 1: DistributedDataParallel under torchrun
        mem_mb=8000,
        runtime=24 * 60,
    params:
        model=model_params(),
        train=lambda wc: train_params("selftrain", wc.seed_dir),  # config seeds: the run's seed
        source=input_params("source"),
        target=input_params("target"),
    message:
        "Self-training {wildcards.method} round {wildcards.k}"
    script:
        "../scripts/selftrain.py"
