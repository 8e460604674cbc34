"""Ground truth: the ONNX LSTM operator and the models built on it, in NumPy float64.

This package imports nothing but NumPy.
"""

from reference.config import LMConfig, LSTMConfig
from reference.lstm import LSTMOutput, lstm
from reference.models import StackOutput, lm_log_probs, next_token, perplexity, run_stack
from reference.weights import LayerWeights, LMWeights, LSTMWeights

__all__ = [
    "LMConfig",
    "LMWeights",
    "LSTMConfig",
    "LSTMOutput",
    "LSTMWeights",
    "LayerWeights",
    "StackOutput",
    "lm_log_probs",
    "lstm",
    "next_token",
    "perplexity",
    "run_stack",
]
