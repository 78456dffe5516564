"""Graph passes over exported ONNX models (issue: `pruneport optimize`)."""
