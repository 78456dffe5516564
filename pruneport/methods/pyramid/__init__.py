"""Pyramid-BERT (k-center selection on a length schedule): :mod:`.spec` (torch-free facts) and :mod:`.model`."""
