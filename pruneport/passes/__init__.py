"""Graph passes for exported folders: ``pruneport optimize FOLDER -o OUT [--target T] [--passes a,b,c]``.

Input and output are export folders with the same I/O contract (``pruneport.export.manifest``). Each pass is one
module with ``NAME``, ``SUMMARY`` and ``apply(onnx_ir.Model) -> int`` (in place, returns its rewrite count), written
with onnx-ir and the onnxscript rewriter (pattern + check + replacement):

- :mod:`~pruneport.passes.cleanup`: constant folding, CSE, dead code removal, shape inference;
- :mod:`~pruneport.passes.score_reduction`: the LTP score's reduction of [B,H,S,S] probabilities reordered;
- :mod:`~pruneport.passes.attention23`: attention blocks -> ONNX ``Attention`` (opset 23), probabilities kept where
  a pruning score reads them;
- :mod:`~pruneport.passes.ort_fusions`: onnxscript's ONNX Runtime contrib fusions.

:mod:`~pruneport.passes.registry` names the passes and holds the default pipeline per target backend (a pass is in
a default only where ``benchmarks/bench_passes.py`` measured a gain; numbers in ``docs/passes.md``).
:mod:`~pruneport.passes.pipeline` runs them and writes the output folder atomically, gated by
:mod:`~pruneport.passes.parity` (outputs before and after equal within 1e-5 on random inputs, identical
tokens_per_layer). The CLS-only last layer is an export-time option (``pruneport export --cls-only-last-layer``,
``PrunedSequenceClassifier.cls_only_last_layer``), not a pass: see ``docs/passes.md``.
"""
