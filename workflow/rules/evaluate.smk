# Evaluation on target val (Cityscapes protocol) and the summary over all models.


rule evaluate:
    input:
        model=lambda wc: checkpoint_path(wc.model, own(wc.model, wc.seed_dir)),
        index=f"{RESULTS}/index/target_val.csv",
    output:
        report(
            f"{RUN}eval/{{model}}.csv",
            caption="../report/eval.rst",
            category="Per-class IoU",
            labels=seed_labels({"model": "{model}"}),
        ),
    log:
        f"{RUN_LOGS}/evaluate_{{model}}.log",
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
        candidates=lambda wc: [
            path for _, path in candidates(wc.model, own(wc.model, wc.seed_dir))
        ],
        val=f"{RESULTS}/index/target_val.csv",
        train=f"{RESULTS}/index/target_train.csv",
    output:
        f"{RUN}eval/{{model}}_snapshots.csv",
    log:
        f"{RUN_LOGS}/evaluate_snapshots_{{model}}.log",
    conda:
        ENV
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=lambda wc: 40 + 10 * len(snapshot_iterations(wc.model)),
    params:
        iterations=lambda wc: candidate_iterations(wc.model),
        target=input_params("target"),
        batch_size=config["evaluate"]["batch_size"],
        num_workers=config["infer"].get("num_workers", 0),  # decoding 3,475 images per snapshot at paper scale
    message:
        "Evaluating the snapshots of {wildcards.model} (target-val mIoU, target-train entropy)"
    script:
        "../scripts/evaluate_snapshots.py"


rule select_model:
    input:
        table=f"{RUN}eval/{{model}}_snapshots.csv",
        candidates=lambda wc: [
            path for _, path in candidates(wc.model, own(wc.model, wc.seed_dir))
        ],
    output:
        f"{RUN}chosen/{{model}}_{{choice}}.pt",
    log:
        f"{RUN_LOGS}/select_model_{{model}}_{{choice}}.log",
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
        iterations=lambda wc: candidate_iterations(wc.model),
    message:
        "Choosing the {wildcards.choice} snapshot of {wildcards.model}"
    script:
        "../scripts/select_model.py"


if ENSEMBLES:

    rule evaluate_ensemble:
        input:
            models=lambda wc: [
                member_checkpoint(m, wc.seed_dir)
                for m in ENSEMBLES[wc.ensemble]["models"]
            ],
            index=f"{RESULTS}/index/target_val.csv",
        output:
            f"{RUN}eval/{{ensemble}}.csv",
        log:
            f"{RUN_LOGS}/evaluate_{{ensemble}}.log",
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
        evals=lambda wc: [
            f"{at(m, wc.seed_dir)}eval/{m}.csv" for m in MODELS + list(ENSEMBLES)
        ],
        quality=lambda wc: [
            f"{labels_home(s, wc.seed_dir)}pseudo_labels/{s}_quality.csv"
            for s in SELFTRAINED
        ],
        snapshots=lambda wc: [
            f"{at(m, wc.seed_dir)}eval/{m}_snapshots.csv"
            for m in MODELS
            if has_snapshots(m)
        ],
    output:
        report(
            f"{RUN}summary.csv",
            caption="../report/summary.rst",
            category="Summary",
            labels={"table": "summary", "run": "{seed_dir}"} if MULTI_SEED else None,
        ),
    log:
        f"{RUN_LOGS}/summary.log",
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


# config seeds: every seed's summary side by side (rule all asks for it with two or more seeds)
rule summary_seeds:
    input:
        summaries=SEED_SUMMARIES,
    output:
        report(
            f"{RESULTS}/summary_seeds.csv",
            caption="../report/summary_seeds.rst",
            category="Summary",
            labels={"table": "over seeds"},
        ),
    log:
        f"{LOGS}/summary_seeds.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        seeds=[run_seed(sd) for sd in SEED_DIRS],
        ensembles=list(ENSEMBLES),
    message:
        f"Summary over the seeds {SEEDS}"
    script:
        "../scripts/summary_seeds.py"
