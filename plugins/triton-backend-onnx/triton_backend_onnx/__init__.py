"""ONNX Runtime backend for triton-core (config ``backend: "onnxruntime"``,
``platform: "onnxruntime_onnx"``)."""

__version__ = "0.1.0"
