"""Training token-pruned models on CPU (fine-tuning, LTP soft then hard pruning)."""
