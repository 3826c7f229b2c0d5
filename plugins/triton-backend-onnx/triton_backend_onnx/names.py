"""The backend's names, importable without onnxruntime (the plugin registers with them)."""

DEFAULT_MODEL_FILENAME = "model.onnx"
BACKEND_NAME = "onnxruntime"
PLATFORM = "onnxruntime_onnx"
