"""The backend's names, importable without its model code (the plugin registers with them)."""

BACKEND_NAME = "coreml"
PLATFORM = "coreml"
