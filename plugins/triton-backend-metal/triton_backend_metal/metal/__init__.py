"""The ``metal`` backend: Metal Shading Language compute kernels (``model.metal``) as models."""
