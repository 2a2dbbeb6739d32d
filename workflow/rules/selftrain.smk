# Self-training on source labels and target pseudo-labels, one model per method and round.


rule selftrain:
    input:
        source=f"{RESULTS}/index/source_train.csv",
        target=f"{RESULTS}/index/target_train.csv",
        pseudo_labels=f"{RESULTS}/pseudo_labels/{{method}}_r{{k}}.h5",
        # selftrain.init_from: the final, label-free selected or target-val best pretrained model
        init=(
            chosen_checkpoint("pretrain", INIT_FROM)
            if config["selftrain"]["init"] == "pretrained"
            else []
        ),
    output:
        **named_snapshot_paths("{method}_r{k}"),
        model=f"{RESULTS}/selftrain/{{method}}_r{{k}}/model.pt",
        metrics=f"{RESULTS}/selftrain/{{method}}_r{{k}}/metrics.csv",  # the training curve
    log:
        f"{LOGS}/selftrain_{{method}}_r{{k}}.log",
    conda:
        ENV
    threads: 2
    resources:
        gpu=config["selftrain"].get("gpus", 1),  # > 1: DistributedDataParallel under torchrun
        mem_mb=8000,
        runtime=24 * 60,
    params:
        model=model_params(),
        train=canonical(config["selftrain"]),
        source=input_params("source"),
        target=input_params("target"),
    message:
        "Self-training {wildcards.method} round {wildcards.k}"
    script:
        "../scripts/selftrain.py"
