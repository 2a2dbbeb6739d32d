"""One module per workflow stage (rule): its `Params` (built and checked once from the rule's params), its artifact
layout, and `run(params, inputs, outputs)`; the training stages share one `TrainJob` (train_job.py), run by train.py
around the loop in train_loop.py.

May live here: the order of a stage's steps, reading its inputs and writing its outputs. Not here: maths
(`esl.ops`), formats (`esl.io`), Snakemake (the library never imports it: workflow/scripts/ adapt).
"""
