"""Training token-pruned models on CPU: fine-tuning, then LTP soft and hard pruning (paper Algorithm 1).

Modules: ``data`` (tokenized, seeded batches), ``model_io`` (models to train, ``model.pt`` out), ``soft_ltp`` (the
soft-mask forward with learnable thresholds), ``trainer`` (one resumable phase), ``recipes`` (fine-tune and LTP),
``evaluate`` (accuracy and relative FLOPs), ``commands`` (``pruneport train finetune`` / ``train ltp``).
"""
