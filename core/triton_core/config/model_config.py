"""ModelConfig as pydantic models, field names and meanings as Triton's model_config.proto.

Fields the core acts on are typed; the rest of Triton's message is kept as
plain data (extra="allow") so that a config round-trips unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..dtypes import DataType


class _Base(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Reshape(_Base):
    shape: list[int] = Field(default_factory=list)


class ModelInput(_Base):
    name: str
    data_type: str = "TYPE_INVALID"
    format: str = "FORMAT_NONE"
    dims: list[int] = Field(default_factory=list)
    reshape: Reshape | None = None
    is_shape_tensor: bool = False
    allow_ragged_batch: bool = False
    optional: bool = False

    @field_validator("data_type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        if v != "TYPE_INVALID":
            DataType.from_config(v)
        return v

    @field_validator("dims")
    @classmethod
    def _dims(cls, v: list[int]) -> list[int]:
        for d in v:
            if d < -1:
                raise ValueError(f"dimension {d} is invalid: use -1 for a variable dimension")
        return v

    @property
    def datatype(self) -> DataType:
        return DataType.from_config(self.data_type)


class ModelOutput(_Base):
    name: str
    data_type: str = "TYPE_INVALID"
    dims: list[int] = Field(default_factory=list)
    reshape: Reshape | None = None
    label_filename: str = ""
    is_shape_tensor: bool = False

    _known_type = field_validator("data_type")(ModelInput._known_type.__func__)  # type: ignore[attr-defined]
    _dims = field_validator("dims")(ModelInput._dims.__func__)  # type: ignore[attr-defined]

    @property
    def datatype(self) -> DataType:
        return DataType.from_config(self.data_type)


class BatchInput(_Base):
    """A tensor the backend adds from the whole batch (Triton's BatchInput; the kinds are in
    triton_core.batch_io). ``kind`` absent in the message means its first value."""

    kind: str = "BATCH_ELEMENT_COUNT"
    target_name: list[str] = Field(default_factory=list)
    data_type: str = "TYPE_INVALID"
    source_input: list[str] = Field(default_factory=list)


class BatchOutput(_Base):
    """An output split per request by a rule other than the batch size (Triton's BatchOutput)."""

    kind: str = "BATCH_SCATTER_WITH_INPUT_SHAPE"
    target_name: list[str] = Field(default_factory=list)
    data_type: str = "TYPE_INVALID"
    source_input: list[str] = Field(default_factory=list)


class VersionPolicy(_Base):
    latest: dict[str, Any] | None = None  # {"num_versions": N}
    all: dict[str, Any] | None = None
    specific: dict[str, Any] | None = None  # {"versions": [...]}

    def kind(self) -> Literal["latest", "all", "specific"]:
        if self.all is not None:
            return "all"
        if self.specific is not None:
            return "specific"
        return "latest"

    def num_versions(self) -> int:
        return int((self.latest or {}).get("num_versions", 1) or 1)

    def specific_versions(self) -> list[int]:
        return [int(v) for v in (self.specific or {}).get("versions", [])]


class QueuePolicy(_Base):
    timeout_action: str = "REJECT"
    default_timeout_microseconds: int = 0
    allow_timeout_override: bool = False
    max_queue_size: int = 0


class DynamicBatching(_Base):
    preferred_batch_size: list[int] = Field(default_factory=list)
    max_queue_delay_microseconds: int = 0
    preserve_ordering: bool = False
    priority_levels: int = 0
    default_priority_level: int = 0
    default_queue_policy: QueuePolicy | None = None
    priority_queue_policy: dict[str, QueuePolicy] = Field(default_factory=dict)


class InstanceGroup(_Base):
    name: str = ""
    kind: Literal["KIND_AUTO", "KIND_GPU", "KIND_CPU", "KIND_MODEL"] = "KIND_AUTO"
    count: int = 1
    gpus: list[int] = Field(default_factory=list)
    passive: bool = False
    # { resources [{ name count global }] priority }: read by scheduling/rate_limiter.py
    rate_limiter: dict[str, Any] | None = None

    @field_validator("count")
    @classmethod
    def _count(cls, v: int) -> int:
        if v < 1:
            raise ValueError("instance count must be at least 1")
        return v


class ModelParameter(_Base):
    string_value: str = ""


class ModelTransactionPolicy(_Base):
    decoupled: bool = False


class ResponseCache(_Base):
    enable: bool = False


class ModelConfig(_Base):
    name: str = ""
    platform: str = ""
    backend: str = ""
    runtime: str = ""
    version_policy: VersionPolicy = Field(default_factory=VersionPolicy)
    max_batch_size: int = 0
    input: list[ModelInput] = Field(default_factory=list)
    output: list[ModelOutput] = Field(default_factory=list)
    batch_input: list[BatchInput] = Field(default_factory=list)
    batch_output: list[BatchOutput] = Field(default_factory=list)
    optimization: dict[str, Any] | None = None
    dynamic_batching: DynamicBatching | None = None
    sequence_batching: dict[str, Any] | None = None
    ensemble_scheduling: dict[str, Any] | None = None
    instance_group: list[InstanceGroup] = Field(default_factory=list)
    default_model_filename: str = ""
    cc_model_filenames: dict[str, str] = Field(default_factory=dict)
    metric_tags: dict[str, str] = Field(default_factory=dict)
    parameters: dict[str, ModelParameter] = Field(default_factory=dict)
    model_warmup: list[dict[str, Any]] = Field(default_factory=list)
    model_transaction_policy: ModelTransactionPolicy | None = None
    response_cache: ResponseCache | None = None

    @field_validator("max_batch_size")
    @classmethod
    def _mbs(cls, v: int) -> int:
        if v < 0:
            raise ValueError("max_batch_size must be non-negative")
        return v

    @property
    def decoupled(self) -> bool:
        return bool(self.model_transaction_policy and self.model_transaction_policy.decoupled)

    def parameter(self, key: str, default: str | None = None) -> str | None:
        p = self.parameters.get(key)
        return p.string_value if p is not None else default

    def input_by_name(self, name: str) -> ModelInput | None:
        for i in self.input:
            if i.name == name:
                return i
        return None

    def output_by_name(self, name: str) -> ModelOutput | None:
        for o in self.output:
            if o.name == name:
                return o
        return None
