"""Reading and writing: dataset layouts and label spaces, images and labels, the workflow's artifacts (HDF5, CSV,
provenance, atomic writes) and the torch datasets over them.

May live here: file formats, path conventions, id maps, decoding. Not here: maths on the arrays (`esl.ops`), the
network (`esl.models`), the order of a pipeline stage (`esl.stages`).
"""
