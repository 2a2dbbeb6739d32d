# ESL: entropy-guided self-training for domain-adaptive semantic segmentation (Saporta et al., CVPRW 2020).
# The pipeline's table of contents; docs/ARCHITECTURE.md describes the stages and their artifacts.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"  # first: validates the config (workflow/schemas/config.schema.yaml)


# Scatter-gather processes: `infer` = inference jobs per model (workflow/rules/infer.smk), config infer.shards;
# `--set-scatter infer=K` overrides it.
scattergather:
    infer=config["infer"].get("shards", 1),


include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/infer.smk"
include: "workflow/rules/entropy.smk"
include: "workflow/rules/pseudo_labels.smk"
include: "workflow/rules/selftrain.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/export.smk"  # on request only: not part of `all`


rule all:
    default_target: True
    input:
        # one summary per seed (config seeds; one: results/{experiment}/summary.csv), and over the seeds
        SEED_SUMMARIES,
        [f"{RESULTS}/summary_seeds.csv"] if MULTI_SEED else [],
        # mIoU against iteration per model, when any model keeps snapshots
        (
            [f"{RESULTS}/{sd}plots/snapshots.png" for sd in SEED_DIRS]
            if any(map(has_snapshots, MODELS))
            else []
        ),
        # the report's figures (workflow/rules/report.smk)
        PLOTS,
