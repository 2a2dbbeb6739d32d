# Predictions for a benchmark server (config `export`): a model's labels on a target split, zipped as the Cityscapes or
# ACDC server takes them. Not part of `all`: ask for the file, e.g.
#   snakemake --cores 2 results/{experiment}/export/esl_r1_target_test.zip
# (with several seeds, results/{experiment}/seed{s}/export/...: each seed's model)
# target_test is the target dataset's split `export.split` (common.smk, split_params); an unlabelled split (acdc's
# test) is indexed without labels.

EXPORT = config.get("export") or {}


rule export:
    input:
        # export.from: the final model, or the snapshot `selected`/`best` (evaluate.smk, select_model)
        model=lambda wc: chosen_checkpoint(
            wc.model, EXPORT.get("from", "final"), own_seed_dir(wc.model, wc.seed_dir)
        ),
        index=f"{RESULTS}/index/{{split}}.csv",
    output:
        f"{RUN}export/{{model}}_{{split}}.zip",
    log:
        f"{RUN_LOGS}/export_{{model}}_{{split}}.log",
    wildcard_constraints:
        split="target_train|target_val|target_test",
    conda:
        ENV
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    params:
        format=EXPORT.get("format", "cityscapes"),
        ids=EXPORT.get("ids"),
        naming=EXPORT.get("naming"),
        root=config["data"]["target"]["root"],
        target=input_params("target"),
        batch_size=config["evaluate"]["batch_size"],
        num_workers=config["infer"].get("num_workers", 0),
    message:
        "Exporting the predictions of {wildcards.model} on {wildcards.split} for the {params.format} server"
    script:
        "../scripts/export.py"
