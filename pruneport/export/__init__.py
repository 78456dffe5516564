"""Export stage: reference model -> deployable folder (model.onnx, pruneport.json manifest, tokenizer files).

``pruneport.export.manifest`` is torch-free (the runtime reads it); the exporter itself imports torch lazily.
"""
