"""Transkimmer (skim predictor before every layer): :mod:`.spec` (torch-free facts) and :mod:`.model` (reference)."""
