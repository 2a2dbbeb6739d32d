# Target inference: each model's main-head logits on every target-train image, at native resolution, cached.
# Sharded inference is Snakemake's scatter-gather process `infer`: K = config infer.shards (the Snakefile's
# `scattergather:` default), or --set-scatter infer=K. With K > 1 the rule `infer` runs once per scatter item, each job
# inferring a contiguous run of whole batches into a temporary infer/{model}.{i}-of-{K}.h5, and `infer_gather`
# concatenates them into the very file an unsharded run writes; with K = 1 the same rule writes infer/{model}.h5 itself.
# There is no `scatter.infer(...)`: it names the outputs of one job that splits its input, and the shards need no split
# job (each reads the whole index and takes its slice, esl's shard_slice).

# K, as scattergather / --set-scatter set it; a shard job's part of its file names: .1-of-K ... .K-of-K
SHARDS = len(gather.infer("{scatteritem}"))
SHARD = ".{scatteritem}" if SHARDS > 1 else ""


rule infer:
    input:
        model=lambda wc: chosen_checkpoint(
            wc.model, LABELS_FROM, own_seed_dir(wc.model, wc.seed_dir)
        ),
        index=f"{RESULTS}/index/target_train.csv",
    output:
        (
            temp(f"{RUN}infer/{{model}}{SHARD}.h5")
            if SHARDS > 1
            else f"{RUN}infer/{{model}}.h5"
        ),
    log:
        f"{RUN_LOGS}/infer_{{model}}{SHARD}.log",
    conda:
        ENV
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    # `shard` = [index (0-based), K] (workflow/scripts/infer.py) from scatteritem `i-of-K`; in shard jobs only, so the
    # unsharded job's params (its cache key and provenance) stay what they always were
    params:
        **(
            {"shard": lambda wc: [int(wc.scatteritem.split("-of-")[0]) - 1, SHARDS]}
            if SHARDS > 1
            else {}
        ),
        target=input_params("target"),
        batch_size=config["infer"]["batch_size"],
        amp=config["infer"].get("amp", False),
        num_workers=config["infer"].get("num_workers", 0),
    message:
        "Inferring target-train logits of {wildcards.model}"
        + (", shard {wildcards.scatteritem}" if SHARDS > 1 else "")
    script:
        "../scripts/infer.py"


# Only with K > 1: it would otherwise be a second rule writing infer/{model}.h5 (a copy of a single shard).
if SHARDS > 1:

    rule infer_gather:
        input:
            # 1-of-K ... K-of-K, in order
            shards=lambda wc: gather.infer(
                f"{RESULTS}/{wc.seed_dir}infer/{wc.model}.{{scatteritem}}.h5"
            ),
            index=f"{RESULTS}/index/target_train.csv",
        output:
            f"{RUN}infer/{{model}}.h5",
        log:
            f"{RUN_LOGS}/infer_{{model}}_gather.log",
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=2000,
            runtime=60,
        params:
            shards=SHARDS,
        message:
            f"Gathering the {SHARDS} inference shards of {{wildcards.model}}"
        script:
            "../scripts/infer_gather.py"
