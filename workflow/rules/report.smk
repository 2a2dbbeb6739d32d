# Figures of the report (matplotlib, CPU, seconds each): from the stages' tables and stored histograms, never a new
# pass over the data. Each is a PNG under plots/ that `snakemake --report` embeds (category "Plots").


# The pseudo-label sets `{method}_r{k}` made from each model's entropy file (round k from the model of round k-1).
LABELS_MADE_FROM = {
    model: [
        f"{m}_r{k}"
        for m in METHODS
        for k in range(1, ROUNDS + 1)
        if previous_model(m, k) == model
    ]
    for model in MODELS
}
# The models whose entropy file is made: those pseudo-labels are made from (pretrain, and rounds before the last).
ENTROPY_MODELS = [m for m in MODELS if LABELS_MADE_FROM[m]]
# The images of the examples figure (the first of target-train, in the entropy file's order).
EXAMPLE_IMAGES = 4

# Every figure of this file, for `rule all`, per run (seed_dir); a shared pretrained model's figures are shared (at()).
PLOTS = list(
    dict.fromkeys(
        [
            f"{RESULTS}/{sd}plots/{name}.png"
            for sd in SEED_DIRS
            for name in (
                "training",
                "miou",
                "class_iou",
                "thresholds",
                "pseudo_label_quality",
            )
        ]
        + [f"{at('pretrain', sd)}plots/examples.png" for sd in SEED_DIRS]
        + [
            f"{at(m, sd)}plots/entropy_{m}.png"
            for sd in SEED_DIRS
            for m in ENTROPY_MODELS
        ]
    )
)
PLOTS += [f"{RESULTS}/plots/seeds.png"] if MULTI_SEED else []


rule plot_training:
    input:
        metrics=lambda wc: [
            f"{model_dir(m, at(m, wc.seed_dir))}/metrics.csv" for m in MODELS
        ],
    output:
        training=report(
            f"{RUN}plots/training.png",
            caption="../report/plot_training.rst",
            category="Plots",
            labels=seed_labels({"figure": "training curves"}),
        ),
    log:
        f"{RUN_LOGS}/plot_training.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        models=MODELS,
    message:
        "Plotting the training curves (loss terms, learning rate, images/s)"
    script:
        "../scripts/plot_training.py"


rule plot_iou:
    input:
        evals=lambda wc: [
            f"{at(m, wc.seed_dir)}eval/{m}.csv" for m in MODELS + list(ENSEMBLES)
        ],
    output:
        miou=report(
            f"{RUN}plots/miou.png",
            caption="../report/plot_miou.rst",
            category="Plots",
            labels=seed_labels({"figure": "mIoU per model"}),
        ),
        classes=report(
            f"{RUN}plots/class_iou.png",
            caption="../report/plot_class_iou.rst",
            category="Plots",
            labels=seed_labels({"figure": "per-class IoU by model"}),
        ),
    log:
        f"{RUN_LOGS}/plot_iou.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        models=MODELS + list(ENSEMBLES),
    message:
        "Plotting mIoU per model and per-class IoU"
    script:
        "../scripts/plot_iou.py"


rule plot_pseudo_labels:
    input:
        thresholds=lambda wc: [
            f"{labels_home(s, wc.seed_dir)}pseudo_labels/{s}_thresholds.csv"
            for s in SELFTRAINED
        ],
        quality=lambda wc: [
            f"{labels_home(s, wc.seed_dir)}pseudo_labels/{s}_quality.csv"
            for s in SELFTRAINED
        ],
    output:
        thresholds=report(
            f"{RUN}plots/thresholds.png",
            caption="../report/plot_thresholds.rst",
            category="Plots",
            labels=seed_labels({"figure": "pseudo-label thresholds per class"}),
        ),
        quality=report(
            f"{RUN}plots/pseudo_label_quality.png",
            caption="../report/plot_quality.rst",
            category="Plots",
            labels=seed_labels({"figure": "pseudo-label precision and coverage"}),
        ),
    log:
        f"{RUN_LOGS}/plot_pseudo_labels.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        sets=SELFTRAINED,
    message:
        "Plotting the pseudo-label thresholds, precision and coverage per class"
    script:
        "../scripts/plot_pseudo_labels.py"


rule plot_entropy:
    input:
        entropy=f"{RUN}entropy/{{model}}.h5",
        thresholds=lambda wc: [
            f"{RESULTS}/{wc.seed_dir}pseudo_labels/{s}_thresholds.csv"
            for s in LABELS_MADE_FROM[wc.model]
        ],
    output:
        histograms=report(
            f"{RUN}plots/entropy_{{model}}.png",
            caption="../report/plot_entropy.rst",
            category="Plots",
            labels=seed_labels({"figure": "entropy histograms per class: {model}"}),
        ),
    log:
        f"{RUN_LOGS}/plot_entropy_{{model}}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        model=lambda wc: wc.model,
        num_classes=config["data"]["num_classes"],
        sets=lambda wc: LABELS_MADE_FROM[wc.model],
    message:
        "Plotting the per-class entropy histograms of {wildcards.model} (pass 1, stored)"
    script:
        "../scripts/plot_entropy.py"


rule plot_examples:
    input:
        # round 1: every method's pseudo-labels of the same prediction (the pretrained model's)
        entropy=f"{RUN}entropy/pretrain.h5",
        pseudo=[f"{RUN}pseudo_labels/{m}_r1.h5" for m in METHODS],
        index=f"{RESULTS}/index/target_train.csv",
    output:
        examples=report(
            f"{RUN}plots/examples.png",
            caption="../report/plot_examples.rst",
            category="Plots",
            labels=seed_labels(
                {"figure": "examples: prediction, pseudo-labels, ground truth"}
            ),
        ),
    log:
        f"{RUN_LOGS}/plot_examples.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        sets=[f"{m}_r1" for m in METHODS],
        images=EXAMPLE_IMAGES,
        layout=config["data"]["target"]["layout"],
        num_classes=config["data"]["num_classes"],
    message:
        "Plotting example target images with the prediction, pseudo-labels and ground truth"
    script:
        "../scripts/plot_examples.py"


rule plot_snapshots:
    input:
        snapshots=lambda wc: [
            f"{at(m, wc.seed_dir)}eval/{m}_snapshots.csv"
            for m in MODELS
            if has_snapshots(m)
        ],
    output:
        report(
            f"{RUN}plots/snapshots.png",
            caption="../report/snapshots.rst",
            category="Model selection",
            labels={"run": "{seed_dir}"} if MULTI_SEED else None,
        ),
    log:
        f"{RUN_LOGS}/plot_snapshots.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        models=[m for m in MODELS if has_snapshots(m)],
        selection=SELECTION,
    message:
        "Plotting target-val mIoU against iteration with the final, best and selected models"
    script:
        "../scripts/plot_snapshots.py"


# config seeds: each seed's mIoU per model, with the mean ± std (rule all asks for it with two or more seeds)
rule plot_seeds:
    input:
        summaries=SEED_SUMMARIES,
    output:
        seeds=report(
            f"{RESULTS}/plots/seeds.png",
            caption="../report/plot_seeds.rst",
            category="Plots",
            labels={"figure": "mIoU per model and seed"},
        ),
    log:
        f"{LOGS}/plot_seeds.log",
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
        f"Plotting the mIoU per model of the seeds {SEEDS}"
    script:
        "../scripts/plot_seeds.py"
