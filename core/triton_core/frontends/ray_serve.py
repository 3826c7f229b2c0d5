"""Replicas on Ray Serve: each replica an in-process Server behind our HTTP front end.

Ray Serve places the replicas, restarts one that dies, scales their number and routes
HTTP to them through its proxy; each replica serves Triton's KServe v2 HTTP API with the
same ASGI app (frontends/http/app.py) as our own HTTP server. Ray is imported only here,
and only when asked (`triton serve --ray`, or `triton_app(...)` from Python).

    from ray import serve
    from triton_core.frontends.ray_serve import triton_app
    serve.run(triton_app(model_repository=["/models"], replicas=2), route_prefix="/")
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from ..errors import TritonError
from ..models.repository import Repository, read_config
from ..options import ServerOptions

log = logging.getLogger("triton_core")


def _import_serve() -> Any:
    try:
        from ray import serve
    except ImportError as e:
        raise TritonError.invalid_arg(
            f"Ray Serve replicas need ray[serve] ({e.name} is not installed): "
            "pip install 'triton-core[ray]'") from None
    return serve


def gpus_per_replica(options: ServerOptions) -> float:
    """GPUs a replica asks Ray for: the devices its models' KIND_GPU instances name
    (instances share a device; a group naming none takes one)."""
    repo = Repository(options.model_repository, options.model_config_name)
    try:
        devices: set[int] = set()
        any_gpu = False
        for src in repo.scan().models.values():
            try:
                cfg = read_config(src)
            except TritonError:
                continue  # the replica reports it when it loads
            for group in cfg.instance_group:
                if group.kind == "KIND_GPU":
                    any_gpu = True
                    devices.update(group.gpus or [])
        return float(max(len(devices), 1)) if any_gpu else 0.0
    finally:
        repo.close()


def triton_app(replicas: int = 1, *, autoscaling: dict[str, Any] | None = None,
               num_gpus: float | None = None, num_cpus: float = 1.0,
               options: ServerOptions | None = None, **server_options: Any) -> Any:
    """A Ray Serve application of Server replicas, for `serve.run`.

    ``replicas``: a fixed number, unless ``autoscaling`` (Ray's autoscaling_config:
    min_replicas, max_replicas, target_ongoing_requests) is given. ``num_gpus`` per replica:
    by default, the KIND_GPU instances of the repository's models. The rest are
    ServerOptions (model_repository=..., model_control_mode=..., as for Server(...)).
    """
    serve = _import_serve()
    opts = options or ServerOptions(**server_options)
    if not opts.model_repository:
        raise TritonError.invalid_arg("at least one --model-repository is required")
    if num_gpus is None:
        num_gpus = gpus_per_replica(opts)
    actor_options: dict[str, Any] = {"num_cpus": num_cpus}
    if num_gpus:
        actor_options["num_gpus"] = num_gpus
    # Ray routes to a replica once its constructor returned (all models loaded: readiness),
    # and replaces one whose health check (liveness) fails.
    settings: dict[str, Any] = {"ray_actor_options": actor_options,
                                "health_check_period_s": 5, "health_check_timeout_s": 30}
    if autoscaling:
        settings["autoscaling_config"] = autoscaling
    else:
        settings["num_replicas"] = replicas
    return serve.deployment(name="triton", **settings)(_replica_class(serve)).bind(
        opts.model_dump(mode="python"))


# The unary RPCs of GRPCInferenceService, served through Ray Serve's gRPC proxy.
# ModelStreamInfer (a bidirectional stream) is not: Ray's proxy carries unary and
# server-streaming calls only.
GRPC_METHODS = (
    "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelConfig",
    "ModelInfer", "ModelStatistics", "RepositoryIndex", "RepositoryModelLoad",
    "RepositoryModelUnload", "LogSettings", "TraceSetting", "SystemSharedMemoryStatus",
    "SystemSharedMemoryRegister", "SystemSharedMemoryUnregister", "CudaSharedMemoryStatus",
    "CudaSharedMemoryRegister", "CudaSharedMemoryUnregister",
)
# What Ray's gRPC proxy registers (serve.start(grpc_options=...)).
GRPC_SERVICER_FUNCTION = "triton_core.frontends.ray_serve.add_inference_service_to_server"


def alias_triton_protos() -> None:
    """tritonclient's generated classes name their modules `grpc_service_pb2` and
    `model_config_pb2` (not tritonclient.grpc.*): Ray pickles each message between its
    proxy and a replica by that name, so both processes must be able to import it."""
    import sys

    from tritonclient.grpc import model_config_pb2, service_pb2

    sys.modules.setdefault("grpc_service_pb2", service_pb2)
    sys.modules.setdefault("model_config_pb2", model_config_pb2)


def add_inference_service_to_server(servicer: Any, server: Any) -> None:
    """The servicer function Ray's gRPC proxy calls (in the proxy's process)."""
    from tritonclient.grpc import service_pb2_grpc

    alias_triton_protos()
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)


class _Aborted(Exception):
    """The servicer ended the call with a status (set on Ray's context)."""


class _RayContext:
    """What our servicer asks of a grpc.aio context, over Ray Serve's gRPC context."""

    def __init__(self, ray_context: Any) -> None:
        self._ray = ray_context

    async def abort(self, code: Any, details: str) -> None:
        if self._ray is not None:
            self._ray.set_code(code)
            self._ray.set_details(details)
        raise _Aborted(details)


def _grpc_method(name: str) -> Any:
    async def method(self: Any, request: Any, grpc_context: Any = None) -> Any:
        from tritonclient.grpc import service_pb2 as pb

        try:
            return await getattr(self.servicer, name)(request, _RayContext(grpc_context))
        except _Aborted:
            return getattr(pb, f"{name}Response")()  # the status set on the context is what counts

    method.__name__ = method.__qualname__ = name
    return method


def _replica_class(serve: Any) -> type:
    class TritonReplica:
        """One Server with its HTTP front end and gRPC servicer, in one Ray actor."""

        def __init__(self, options: dict[str, Any]) -> None:
            from ..server import Server
            from .grpc.service import InferenceServicer
            from .http.app import HttpFrontEnd

            alias_triton_protos()  # before Ray unpickles the first gRPC request
            self.server = Server(ServerOptions(**options))
            self.server.start()
            self.front_end = HttpFrontEnd(self.server)
            self.servicer = InferenceServicer(self.server)

        def __serve_build_asgi_app__(self) -> Any:
            return self.front_end

        def check_health(self) -> None:
            """Ray replaces a replica whose check raises."""
            if not self.server.is_live():
                raise RuntimeError("server is not live")

        def __del__(self) -> None:
            server = getattr(self, "server", None)
            if server is not None:
                server.stop()

    for name in GRPC_METHODS:
        setattr(TritonReplica, name, _grpc_method(name))
    # the HTTP app is built in the replica: __serve_build_asgi_app__
    return serve.ingress()(TritonReplica)


# `triton serve --ray` --------------------------------------------------------------------
def ray_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="triton serve --ray", add_help=False)
    p.add_argument("--ray", action="store_true",
                   help="serve the repository as replicas on Ray Serve (needs triton-core[ray])")
    p.add_argument("--replicas", type=int, default=1, help="replicas (without autoscaling)")
    p.add_argument("--min-replicas", type=int, default=None, help="autoscaling: at least")
    p.add_argument("--max-replicas", type=int, default=None, help="autoscaling: at most")
    p.add_argument("--target-ongoing-requests", type=float, default=2.0,
                   help="autoscaling: requests in flight per replica Ray aims for")
    p.add_argument("--ray-address", default=None,
                   help="a running Ray cluster (default: start a local one)")
    p.add_argument("--gpus-per-replica", type=float, default=None,
                   help="default: the KIND_GPU instances of the repository's models")
    return p


def autoscaling_of(a: argparse.Namespace) -> dict[str, Any] | None:
    if a.min_replicas is None and a.max_replicas is None:
        return None
    low = a.min_replicas if a.min_replicas is not None else 1
    high = a.max_replicas if a.max_replicas is not None else max(low, 1)
    if low < 0 or high < max(low, 1):
        raise TritonError.invalid_arg(
            f"--min-replicas={low} --max-replicas={high}: need 0 <= min <= max and max >= 1")
    return {"min_replicas": low, "max_replicas": high,
            "target_ongoing_requests": a.target_ongoing_requests}


def serve_main(argv: list[str]) -> int:
    """`triton serve --ray [--replicas N | --min-replicas A --max-replicas B] <tritonserver flags>`."""
    import signal
    import sys
    import time

    from ..cli import build_parser, options_from_args

    ray_args, rest = ray_parser().parse_known_args(argv)
    a = build_parser("triton serve --ray").parse_args(rest)
    if ray_args.replicas < 1:
        raise SystemExit("error: --replicas must be at least 1")
    options = options_from_args(a)
    serve = _import_serve()
    import ray

    ray.init(address=ray_args.ray_address)
    serve.start(http_options={"host": a.http_address, "port": a.http_port},
                grpc_options={"port": a.grpc_port, "grpc_servicer_functions": [GRPC_SERVICER_FUNCTION]})
    app = triton_app(ray_args.replicas, autoscaling=autoscaling_of(ray_args),
                     num_gpus=ray_args.gpus_per_replica, options=options)
    serve.run(app, name="triton", route_prefix="/")
    log.info("Ray Serve: HTTP on %s:%d, gRPC on port %d", a.http_address, a.http_port, a.grpc_port)
    # SIGTERM as SIGINT: leave through `finally`, which stops the replicas (and the local Ray)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        serve.shutdown()
        ray.shutdown()
