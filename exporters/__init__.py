"""Exporters: one set of canonical weights -> PyTorch modules and ONNX models."""
