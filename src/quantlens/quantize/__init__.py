"""Producing quantized variants of a float model."""
