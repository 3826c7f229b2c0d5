"""PyTorch backend for triton-core (config ``backend: "pytorch"``, platforms
``pytorch_libtorch`` / ``libtorch`` / ``torch_aoti``)."""

__version__ = "0.1.0"
