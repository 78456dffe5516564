"""Calibration data, threshold calibration and INT8 quantization."""
