"""Core ML backend for triton-core (config ``backend: "coreml"``, ``platform: "coreml"``).

Model specs are read, auto-completed and validated on any OS (coremltools reads the
protobuf spec everywhere); predictions need macOS, where Core ML lives."""

__version__ = "0.1.0"
