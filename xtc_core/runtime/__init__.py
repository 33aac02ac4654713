"""Inference runtime for exported XTC models: ONNX Runtime + tokenizers + numpy only.

Importing it (or ``xtc_core``) loads neither torch nor transformers, so a deployed model needs just
``pip install "xtc-service[runtime]"``.
"""

from .predictor import Prediction, Predictor

__all__ = ["Prediction", "Predictor"]
