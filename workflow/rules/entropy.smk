# Entropy maps: softmax, upsampled probabilities, argmax, max-prob and normalised entropy per pixel.


rule entropy:
    input:
        logits=f"{RUN}infer/{{model}}.h5",
        index=f"{RESULTS}/index/target_train.csv",
    output:
        h5=f"{RUN}entropy/{{model}}.h5",
        pictures=report(
            directory(f"{RUN}entropy/{{model}}_pictures"),
            patterns=["{name}.png"],
            caption="../report/entropy.rst",
            category="Entropy maps",
            subcategory="{seed_dir}{model}",
        ),
    log:
        f"{RUN_LOGS}/entropy_{{model}}.log",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        size=config["entropy"]["size"] or list(config["data"]["target"]["size"]),
        pictures=config["entropy"]["pictures"],
        batch_size=config["infer"]["batch_size"],
    message:
        "Entropy maps of {wildcards.model}"
    script:
        "../scripts/entropy.py"
