"""AdapLeR (contribution predictor, threshold eta/n): :mod:`.spec` (torch-free facts) and :mod:`.model` (reference)."""
