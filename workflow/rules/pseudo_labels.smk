# Pseudo-labels: exact per-class thresholds (streaming), applied to the argmax maps. One file per method and round.


rule pseudo_labels:
    input:
        # the job's seed_dir is already the previous model's (the consumers ask for at(previous model, seed))
        entropy=lambda wc: f"{RESULTS}/{wc.seed_dir}entropy/{previous_model(wc.method, wc.k)}.h5",
        index=f"{RESULTS}/index/target_train.csv",
    output:
        h5=f"{RUN}pseudo_labels/{{method}}_r{{k}}.h5",
        thresholds=report(
            f"{RUN}pseudo_labels/{{method}}_r{{k}}_thresholds.csv",
            caption="../report/thresholds.rst",
            category="Pseudo-labels",
            subcategory="Thresholds",
        ),
        quality=report(
            f"{RUN}pseudo_labels/{{method}}_r{{k}}_quality.csv",
            caption="../report/quality.rst",
            category="Pseudo-labels",
            subcategory="Precision and coverage",
        ),
    log:
        f"{RUN_LOGS}/pseudo_labels_{{method}}_r{{k}}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        method=lambda wc: wc.method,
        params=lambda wc: canonical(config["pseudo_labels"].get(wc.method) or {}),
        layout=config["data"]["target"]["layout"],
        num_classes=config["data"]["num_classes"],
    message:
        "Pseudo-labels {wildcards.method} round {wildcards.k}"
    script:
        "../scripts/pseudo_labels.py"
