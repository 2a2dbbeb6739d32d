# Data: the embedded toy domain pair (when configured) and one validated index per split.


if config.get("toy"):

    rule toy:
        message:
            "Generating the toy domain pair in {params.toy[root]}"
        output:
            f"{config['toy']['root']}/manifest.csv",
        params:
            toy=config["toy"],
        log:
            f"{LOGS}/toy.log",
        threads: 1
        resources:
            mem_mb=1000,
            runtime=10,
        conda:
            ENV
        script:
            "../scripts/toy.py"


rule index:
    message:
        "Indexing and validating the {wildcards.split} split"
    input:
        toy_manifest(),
    output:
        f"{RESULTS}/index/{{split}}.csv",
    params:
        dataset=lambda wc: split_params(wc.split),
        num_classes=config["data"]["num_classes"],
    log:
        f"{LOGS}/index_{{split}}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    conda:
        ENV
    script:
        "../scripts/index.py"
