"""The networks: DeepLabv2 (ResNet backbone, ASPP classifier, aux head), the MinEnt/AdvEnt adapters and their
discriminators, checkpoints (ours and ADVENT's state dicts, the ImageNet initialisation).

May live here: `nn.Module`s, how they are built, initialised, saved and loaded. Not here: training loops
(`esl.stages.train_loop`), losses shared with other code (`esl.ops.losses`), file layouts other than checkpoints.
"""
