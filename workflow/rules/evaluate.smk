# Evaluation on target val (Cityscapes protocol) and the summary over all models.


rule evaluate:
    input:
        model=lambda wc: checkpoint_path(wc.model),
        index=f"{RESULTS}/index/target_val.csv",
    output:
        report(
            f"{RESULTS}/eval/{{model}}.csv",
            caption="../report/eval.rst",
            category="Per-class IoU",
            labels={"model": "{model}"},
        ),
    log:
        f"{LOGS}/evaluate_{{model}}.log",
    conda:
        ENV
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    params:
        target=input_params("target"),
        batch_size=config["evaluate"]["batch_size"],
    message:
        "Evaluating {wildcards.model} on target val"
    script:
        "../scripts/evaluate.py"


rule summary:
    input:
        evals=expand(f"{RESULTS}/eval/{{model}}.csv", model=MODELS),
        quality=expand(
            f"{RESULTS}/pseudo_labels/{{model}}_quality.csv", model=SELFTRAINED
        ),
    output:
        report(
            f"{RESULTS}/summary.csv",
            caption="../report/summary.rst",
            category="Summary",
        ),
    log:
        f"{LOGS}/summary.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        models=MODELS,
    message:
        "Summary over all models"
    script:
        "../scripts/summary.py"
