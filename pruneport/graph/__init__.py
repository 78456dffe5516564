"""ONNX graph helpers shared by several stages, below all of them (onnx only; no torch, no pruneport stage).

- :mod:`pruneport.graph.roles`: which MatMul of a dynamo-exported pruneport graph belongs to which layer and does what
  (read by INT8 quantization, threshold calibration, BOPs and the OpenVINO IR);
- :mod:`pruneport.graph.nodes`: what a node reads (its subgraphs' captures included) and who consumes a value
  (the graph passes' rewrites);
- :mod:`pruneport.graph.threshold_slots`: where a threshold constant sits and how to rebind it to a named
  initializer (the method specs' locators, threshold calibration).
"""
