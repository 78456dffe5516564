"""LTP (learned token pruning): :mod:`.spec` (torch-free facts) and :mod:`.model` (the PyTorch reference)."""
