"""Pure maths on arrays and tensors: entropy maps, exact streaming ranks and the first-pass histograms, the
pseudo-label threshold rules (`METHODS`), metrics, losses, the optimiser.

May live here: functions of arrays/tensors and small state objects over them. Not here: files, paths, logging,
threads or devices chosen on the caller's behalf — a function here takes what it needs as arguments.
"""
