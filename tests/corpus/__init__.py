"""A corpus of user-shaped ONNX models with LSTMs, built by code (see README.md)."""
