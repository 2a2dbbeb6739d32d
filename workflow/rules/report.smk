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
# Every figure of this file, for `rule all`.
PLOTS = [
    f"{RESULTS}/plots/training.png",
    f"{RESULTS}/plots/miou.png",
    f"{RESULTS}/plots/class_iou.png",
    f"{RESULTS}/plots/thresholds.png",
    f"{RESULTS}/plots/pseudo_label_quality.png",
    f"{RESULTS}/plots/examples.png",
] + [f"{RESULTS}/plots/entropy_{m}.png" for m in ENTROPY_MODELS]


rule plot_training:
    input:
        metrics=[f"{model_dir(m)}/metrics.csv" for m in MODELS],
    output:
        training=report(
            f"{RESULTS}/plots/training.png",
            caption="../report/plot_training.rst",
            category="Plots",
            labels={"figure": "training curves"},
        ),
    log:
        f"{LOGS}/plot_training.log",
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
        evals=expand(f"{RESULTS}/eval/{{model}}.csv", model=MODELS + list(ENSEMBLES)),
    output:
        miou=report(
            f"{RESULTS}/plots/miou.png",
            caption="../report/plot_miou.rst",
            category="Plots",
            labels={"figure": "mIoU per model"},
        ),
        classes=report(
            f"{RESULTS}/plots/class_iou.png",
            caption="../report/plot_class_iou.rst",
            category="Plots",
            labels={"figure": "per-class IoU by model"},
        ),
    log:
        f"{LOGS}/plot_iou.log",
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
        thresholds=expand(
            f"{RESULTS}/pseudo_labels/{{s}}_thresholds.csv", s=SELFTRAINED
        ),
        quality=expand(f"{RESULTS}/pseudo_labels/{{s}}_quality.csv", s=SELFTRAINED),
    output:
        thresholds=report(
            f"{RESULTS}/plots/thresholds.png",
            caption="../report/plot_thresholds.rst",
            category="Plots",
            labels={"figure": "pseudo-label thresholds per class"},
        ),
        quality=report(
            f"{RESULTS}/plots/pseudo_label_quality.png",
            caption="../report/plot_quality.rst",
            category="Plots",
            labels={"figure": "pseudo-label precision and coverage"},
        ),
    log:
        f"{LOGS}/plot_pseudo_labels.log",
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
        entropy=f"{RESULTS}/entropy/{{model}}.h5",
        thresholds=lambda wc: [
            f"{RESULTS}/pseudo_labels/{s}_thresholds.csv"
            for s in LABELS_MADE_FROM[wc.model]
        ],
    output:
        histograms=report(
            f"{RESULTS}/plots/entropy_{{model}}.png",
            caption="../report/plot_entropy.rst",
            category="Plots",
            labels={"figure": "entropy histograms per class: {model}"},
        ),
    log:
        f"{LOGS}/plot_entropy_{{model}}.log",
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
        entropy=f"{RESULTS}/entropy/pretrain.h5",
        pseudo=expand(f"{RESULTS}/pseudo_labels/{{m}}_r1.h5", m=METHODS),
        index=f"{RESULTS}/index/target_train.csv",
    output:
        examples=report(
            f"{RESULTS}/plots/examples.png",
            caption="../report/plot_examples.rst",
            category="Plots",
            labels={"figure": "examples: prediction, pseudo-labels, ground truth"},
        ),
    log:
        f"{LOGS}/plot_examples.log",
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
        snapshots=expand(
            f"{RESULTS}/eval/{{model}}_snapshots.csv",
            model=[m for m in MODELS if has_snapshots(m)],
        ),
    output:
        report(
            f"{RESULTS}/plots/snapshots.png",
            caption="../report/snapshots.rst",
            category="Model selection",
        ),
    log:
        f"{LOGS}/plot_snapshots.log",
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
