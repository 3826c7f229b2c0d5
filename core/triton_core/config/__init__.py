"""Model configuration: the pydantic ModelConfig and its pbtxt / JSON forms."""

from .io import config_to_json_dict, load_config_file, parse_config_json, parse_pbtxt
from .model_config import (
    BatchInput,
    BatchOutput,
    DynamicBatching,
    InstanceGroup,
    ModelConfig,
    ModelInput,
    ModelOutput,
    ModelParameter,
    VersionPolicy,
)

__all__ = [
    "BatchInput",
    "BatchOutput",
    "DynamicBatching",
    "InstanceGroup",
    "ModelConfig",
    "ModelInput",
    "ModelOutput",
    "ModelParameter",
    "VersionPolicy",
    "config_to_json_dict",
    "load_config_file",
    "parse_config_json",
    "parse_pbtxt",
]
