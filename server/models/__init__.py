"""seamcut.server.models: shared model objects (weights and sessions only).

Per-stream recurrent state (Silero's LSTM state and 64-sample context) lives in the
session and is passed into every call; a model object never remembers a stream. May
import numpy, onnxruntime and the leaf modules config/errors; nothing above.
"""
