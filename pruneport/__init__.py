"""pruneport: export trained token-pruned transformers to fast dynamic-length ONNX/OpenVINO graphs."""

__version__ = "0.1.0"
