# Target inference: each model's main-head logits on every target-train image, at native resolution, cached.


rule infer:
    message:
        "Inferring target-train logits of {wildcards.model}"
    input:
        model=lambda wc: checkpoint_path(wc.model),
        index=f"{RESULTS}/index/target_train.csv",
    output:
        f"{RESULTS}/infer/{{model}}.h5",
    params:
        target=input_params("target"),
        batch_size=config["infer"]["batch_size"],
    log:
        f"{LOGS}/infer_{{model}}.log",
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    conda:
        ENV
    script:
        "../scripts/infer.py"
