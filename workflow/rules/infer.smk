# Target inference: each model's main-head logits on every target-train image, at native resolution, cached.
# With infer.shards = K > 1, K independent jobs each infer a contiguous run of whole batches, and a gather job
# concatenates them into the same file an unsharded run writes.

SHARDS = int(config["infer"].get("shards", 1))


if SHARDS == 1:

    rule infer:
        input:
            model=lambda wc: chosen_checkpoint(wc.model, LABELS_FROM),
            index=f"{RESULTS}/index/target_train.csv",
        output:
            f"{RESULTS}/infer/{{model}}.h5",
        log:
            f"{LOGS}/infer_{{model}}.log",
        conda:
            ENV
        threads: 2
        resources:
            gpu=1,
            mem_mb=8000,
            runtime=120,
        params:
            target=input_params("target"),
            batch_size=config["infer"]["batch_size"],
            amp=config["infer"].get("amp", False),
            num_workers=config["infer"].get("num_workers", 0),
        message:
            "Inferring target-train logits of {wildcards.model}"
        script:
            "../scripts/infer.py"

else:

    rule infer_shard:
        input:
            model=lambda wc: chosen_checkpoint(wc.model, LABELS_FROM),
            index=f"{RESULTS}/index/target_train.csv",
        output:
            temp(f"{RESULTS}/infer/{{model}}.shard{{shard}}of{SHARDS}.h5"),
        log:
            f"{LOGS}/infer_{{model}}.shard{{shard}}of{SHARDS}.log",
        wildcard_constraints:
            shard=r"\d+",
        conda:
            ENV
        threads: 2
        resources:
            gpu=1,
            mem_mb=8000,
            runtime=120,
        params:
            target=input_params("target"),
            batch_size=config["infer"]["batch_size"],
            amp=config["infer"].get("amp", False),
            num_workers=config["infer"].get("num_workers", 0),
            shard=lambda wc: [int(wc.shard), SHARDS],
        message:
            f"Inferring target-train logits of {{wildcards.model}}, shard {{wildcards.shard}} of {SHARDS}"
        script:
            "../scripts/infer.py"

    rule infer_gather:
        input:
            shards=lambda wc: [
                f"{RESULTS}/infer/{wc.model}.shard{i}of{SHARDS}.h5"
                for i in range(SHARDS)
            ],
            index=f"{RESULTS}/index/target_train.csv",
        output:
            f"{RESULTS}/infer/{{model}}.h5",
        log:
            f"{LOGS}/infer_{{model}}_gather.log",
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
