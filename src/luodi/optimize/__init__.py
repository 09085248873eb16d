"""Optimization of a trained package: ONNX export (export.py); quantization, pruning and the variant search
within an accuracy budget build on it."""
