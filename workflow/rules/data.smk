# Data: the embedded toy domain pair (when configured) and one validated index per split.


if config.get("toy"):

    rule toy:
        output:
            f"{config['toy']['root']}/manifest.csv",
        log:
            f"{LOGS}/toy.log",
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=1000,
            runtime=10,
        params:
            toy=canonical(config["toy"]),
        message:
            "Generating the toy domain pair in {params.toy[root]}"
        script:
            "../scripts/toy.py"


rule index:
    input:
        toy_manifest(),
    output:
        f"{RESULTS}/index/{{split}}.csv",
    log:
        f"{LOGS}/index_{{split}}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        dataset=lambda wc: split_params(wc.split),
        num_classes=config["data"]["num_classes"],
        # the split's files (names, sizes, mtimes): a changed dataset re-indexes it and re-runs what follows
        fingerprint=lambda wc: dataset_fingerprint(wc.split),
    message:
        "Indexing and validating the {wildcards.split} split"
    script:
        "../scripts/index.py"
