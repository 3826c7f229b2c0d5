"""Example triton-core backend: outputs are numpy expressions of the inputs."""

__version__ = "0.1.0"
