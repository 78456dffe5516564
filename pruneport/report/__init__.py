"""Accuracy-versus-BOPs reports."""
