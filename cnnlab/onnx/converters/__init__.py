"""One exporter per cnnlab layer or op and one importer per ONNX op, grouped by family,
each exporter next to the importer of the same operation (see :mod:`cnnlab.onnx.registry`).

An exporter is ``fn(ctx, call)``: it writes the ONNX nodes of one recorded call into an
:class:`~cnnlab.onnx.export.ExportContext`. An importer is ``fn(builder, node)``: it turns
one ONNX node into cnnlab modules through a :class:`~cnnlab.onnx.load.Builder`.
"""
