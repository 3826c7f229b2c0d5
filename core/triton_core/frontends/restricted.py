"""Restricted APIs: Triton's categories, and the HTTP routes and gRPC methods of each.

--http-restricted-api and --grpc-restricted-protocol name categories (API[,API]:KEY=VALUE);
a request to a route or method of a restricted category must carry the header (gRPC:
metadata) KEY with VALUE, else it is refused: HTTP "This API is restricted, expecting
header 'KEY'", gRPC UNAVAILABLE "This protocol is restricted, expecting header 'KEY'".

This one table serves the HTTP router (http/app.py) and both gRPC engines (grpc/h2_server.py,
grpc/restricted.py), and cli.py checks the flags' names against it. It follows Triton
(src/restricted_features.h for the names; the RETURN_AND_RESPOND_IF_RESTRICTED calls of
src/http_server.cc and the restricted_keys_ of src/grpc/grpc_server.cc for the members:
its newer gRPC server restricts grpc.health.v1 Check under "health").

HTTP routes are the router's path patterns: literal segments, ``{param}`` segments, and
``[/versions/{version}]`` for the optional version of a model route. gRPC methods are
full method paths (/package.Service/Method). Every route and every RPC belongs to one
category: the router and tests/frontends/test_grpc_restricted.py check that.
"""

from __future__ import annotations

from dataclasses import dataclass

INFERENCE_SERVICE = "inference.GRPCInferenceService"
HEALTH_SERVICE = "grpc.health.v1.Health"


def _rpc(*names: str) -> tuple[str, ...]:
    return tuple(f"/{INFERENCE_SERVICE}/{n}" for n in names)


_MODEL = "/v2/models/{name}[/versions/{version}]"


@dataclass(frozen=True, slots=True)
class Category:
    http: tuple[str, ...]  # route patterns
    grpc: tuple[str, ...]  # full method paths


CATEGORIES: dict[str, Category] = {
    "health": Category(
        ("/v2/health/live", "/v2/health/ready", f"{_MODEL}/ready"),
        _rpc("ServerLive", "ServerReady", "ModelReady") + (f"/{HEALTH_SERVICE}/Check",)),
    "metadata": Category(("/v2", _MODEL), _rpc("ServerMetadata", "ModelMetadata")),
    "inference": Category(
        (f"{_MODEL}/infer", f"{_MODEL}/generate", f"{_MODEL}/generate_stream"),
        _rpc("ModelInfer", "ModelStreamInfer")),
    "shared-memory": Category(
        tuple(f"/v2/{kind}{region}/{action}"
              for kind in ("systemsharedmemory", "cudasharedmemory")
              for region in ("", "/region/{region}")
              for action in ("status", "register", "unregister")
              if region or action != "register"),  # register names its region
        _rpc("SystemSharedMemoryStatus", "SystemSharedMemoryRegister",
             "SystemSharedMemoryUnregister", "CudaSharedMemoryStatus",
             "CudaSharedMemoryRegister", "CudaSharedMemoryUnregister")),
    "model-config": Category((f"{_MODEL}/config",), _rpc("ModelConfig")),
    "model-repository": Category(
        ("/v2/repository/index", "/v2/repository/models/{name}/load",
         "/v2/repository/models/{name}/unload"),
        _rpc("RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload")),
    "statistics": Category(("/v2/models/stats", f"{_MODEL}/stats"), _rpc("ModelStatistics")),
    # a model's trace setting has no version (Triton: a versioned one is not found)
    "trace": Category(("/v2/trace/setting", "/v2/models/{name}/trace/setting"),
                      _rpc("TraceSetting")),
    "logging": Category(("/v2/logging",), _rpc("LogSettings")),
}

_HTTP = {route: name for name, c in CATEGORIES.items() for route in c.http}
_GRPC = {method: name for name, c in CATEGORIES.items() for method in c.grpc}


def http_category(route: str) -> str:
    """The category of an HTTP route pattern (as CATEGORIES spells it)."""
    try:
        return _HTTP[route]
    except KeyError:
        raise ValueError(f"HTTP route {route!r} has no restricted-API category") from None


def grpc_category(method: str) -> str | None:
    """The category of a gRPC method path (/package.Service/Method); None if unknown."""
    return _GRPC.get(method)


def parse_rules(items: list[str], flag: str) -> dict[str, tuple[str, str]]:
    """The values of a --*-restricted-* flag: category -> (header key, value).

    Raises ValueError with the message for the command line.
    """
    out: dict[str, tuple[str, str]] = {}
    for item in items:
        apis, sep, kv = item.partition(":")
        key, eq, value = kv.partition("=")
        if not sep or not eq or not key:
            raise ValueError(f"{flag} expects <API>[,<API>]:<key>=<value>, got '{item}'")
        for api in apis.split(","):
            if api not in CATEGORIES:
                raise ValueError(f"unknown restricted API category '{api}' "
                                 f"(one of {', '.join(sorted(CATEGORIES))})")
            out[api] = (key, value)
    return out
