"""Triton's generated protobuf modules, as tritonclient ships them, without its gRPC client.

``from tritonclient.grpc import model_config_pb2`` first runs ``tritonclient/grpc/__init__.py``,
which imports grpcio, tritonclient.utils and ml_dtypes: some 20 MB and 0.1 s that a server
serving neither the grpcio engine nor a client does not need. Here the generated files
(``model_config_pb2``, ``service_pb2``) are run on their own. protobuf's default pool takes a
file added twice with the same contents once, so the message classes are the very classes of
``tritonclient.grpc``'s modules, whichever is imported first.

    from triton_core.protos import model_config_pb2, service_pb2   # loaded on first use
"""

from __future__ import annotations

import builtins
import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

_PACKAGE = "tritonclient.grpc"
_MODULES = ("model_config_pb2", "service_pb2")
_lock = threading.RLock()  # service_pb2 loads model_config_pb2 while loading
_loaded: dict[str, ModuleType] = {}


def _client_folder() -> Path:
    spec = importlib.util.find_spec("tritonclient")  # finds; imports nothing
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("No module named 'tritonclient'", name="tritonclient")
    return Path(next(iter(spec.submodule_search_locations))) / "grpc"


def _import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (),
            level: int = 0) -> Any:
    # service_pb2 says "from tritonclient.grpc import model_config_pb2": answered without
    # running the client's __init__
    if name == _PACKAGE and level == 0:
        return SimpleNamespace(model_config_pb2=_module("model_config_pb2"))
    return builtins.__import__(name, globals, locals, fromlist, level)


def _module(name: str) -> ModuleType:
    with _lock:
        module = _loaded.get(name) or sys.modules.get(f"{_PACKAGE}.{name}")
        if module is not None:  # loaded here, or the client is imported already
            return module
        path = _client_folder() / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"{__name__}.{name}", path)
        if spec is None or spec.loader is None:
            raise ModuleNotFoundError(f"No module named '{_PACKAGE}.{name}' ({path})",
                                      name=f"{_PACKAGE}.{name}")
        module = importlib.util.module_from_spec(spec)
        module.__dict__["__builtins__"] = {**builtins.__dict__, "__import__": _import}
        try:
            spec.loader.exec_module(module)
        except FileNotFoundError:
            raise ModuleNotFoundError(f"No module named '{_PACKAGE}.{name}' ({path})",
                                      name=f"{_PACKAGE}.{name}") from None
        finally:
            module.__dict__["__builtins__"] = builtins
        _loaded[name] = module
        return module


def __getattr__(name: str) -> ModuleType:
    if name in _MODULES:
        return _module(name)
    raise AttributeError(f"module '{__name__}' has no attribute '{name}'")
