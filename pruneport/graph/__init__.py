"""ONNX graph helpers shared by several stages, below all of them (onnx only; no torch, no pruneport stage).

- :mod:`pruneport.graph.roles`: which MatMul of a dynamo-exported pruneport graph belongs to which layer and does what
  (read by INT8 quantization, threshold calibration, BOPs and the OpenVINO IR);
- :mod:`pruneport.graph.nodes`: what a node reads (its subgraphs' captures included) and who consumes a value
  (the graph passes' rewrites).
"""
