"""lstm-conformance: is your exported LSTM still the model you trained?"""

__version__ = "0.1.0"
