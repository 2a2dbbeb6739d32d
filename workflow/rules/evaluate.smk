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


rule evaluate_snapshots:
    input:
        # the snapshots (pretrain/selftrain.snapshot_every), then the final model
        candidates=lambda wc: [path for _, path in candidates(wc.model)],
        val=f"{RESULTS}/index/target_val.csv",
        train=f"{RESULTS}/index/target_train.csv",
    output:
        f"{RESULTS}/eval/{{model}}_snapshots.csv",
    log:
        f"{LOGS}/evaluate_snapshots_{{model}}.log",
    conda:
        ENV
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=lambda wc: 30 + 10 * len(candidates(wc.model)),
    params:
        iterations=lambda wc: [i for i, _ in candidates(wc.model)],
        target=input_params("target"),
        batch_size=config["evaluate"]["batch_size"],
        num_workers=config["infer"].get("num_workers", 0),  # decoding 3,475 images per snapshot at paper scale
    message:
        "Evaluating the snapshots of {wildcards.model} (target-val mIoU, target-train entropy)"
    script:
        "../scripts/evaluate_snapshots.py"


rule select_model:
    input:
        table=f"{RESULTS}/eval/{{model}}_snapshots.csv",
        candidates=lambda wc: [path for _, path in candidates(wc.model)],
    output:
        f"{RESULTS}/chosen/{{model}}_{{choice}}.pt",
    log:
        f"{LOGS}/select_model_{{model}}_{{choice}}.log",
    wildcard_constraints:
        choice="best|selected",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        choice=lambda wc: wc.choice,
        selection=SELECTION,
        iterations=lambda wc: [i for i, _ in candidates(wc.model)],
    message:
        "Choosing the {wildcards.choice} snapshot of {wildcards.model}"
    script:
        "../scripts/select_model.py"


if ENSEMBLES:

    rule evaluate_ensemble:
        input:
            models=lambda wc: [
                member_checkpoint(m) for m in ENSEMBLES[wc.ensemble]["models"]
            ],
            index=f"{RESULTS}/index/target_val.csv",
        output:
            f"{RESULTS}/eval/{{ensemble}}.csv",
        log:
            f"{LOGS}/evaluate_{{ensemble}}.log",
        wildcard_constraints:
            ensemble="|".join(re.escape(name) for name in ENSEMBLES),
        conda:
            ENV
        threads: 2
        resources:
            gpu=1,
            mem_mb=8000,
            runtime=60,
        params:
            ensemble=lambda wc: ENSEMBLES[wc.ensemble],
            target=input_params("target"),
            model=model_params(),
            batch_size=config["evaluate"]["batch_size"],
        message:
            "Evaluating the ensemble {wildcards.ensemble} on target val"
        script:
            "../scripts/evaluate_ensemble.py"


rule summary:
    input:
        evals=expand(f"{RESULTS}/eval/{{model}}.csv", model=MODELS + list(ENSEMBLES)),
        quality=expand(
            f"{RESULTS}/pseudo_labels/{{model}}_quality.csv", model=SELFTRAINED
        ),
        snapshots=expand(
            f"{RESULTS}/eval/{{model}}_snapshots.csv",
            model=[m for m in MODELS if has_snapshots(m)],
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
        models=MODELS + list(ENSEMBLES),
        final_iters={m: final_iteration(m) for m in MODELS},
        selection=SELECTION,
    message:
        "Summary over all models"
    script:
        "../scripts/summary.py"
