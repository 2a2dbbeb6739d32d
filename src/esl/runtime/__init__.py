"""How things run, not what they compute: device, autocast and memory-format policy, progress lines, the background
writer thread, resumable state and stop signals, several processes under torchrun.

May live here: process, thread, device and signal handling. Not here: anything that changes results (a CPU run is
bit-identical with or without what lives here).
"""
