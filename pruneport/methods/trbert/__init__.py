"""TR-BERT (policy-network token selection): :mod:`.spec` (torch-free facts) and :mod:`.model` (reference)."""
