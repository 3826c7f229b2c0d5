"""inference.GRPCInferenceService in the server's asyncio event loop, on the native engine
(h2_server.py) or on grpc.aio; grpcio is imported only for the grpc.aio engine."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...config.io import config_to_proto
from ...errors import ErrorCode, TritonError, as_triton_error
from ...logsettings import VERBOSE
from ...protos import service_pb2 as pb
from ...server import Server
from ..classification import classifier_for
from ..header_forward import HeaderForward
from . import codec, health
from .call import abort
from .h2_server import H2Server
from .status import StatusCode

if TYPE_CHECKING:
    import grpc

log = logging.getLogger("triton_core")

MAX_GRPC_MESSAGE_SIZE = 2**31 - 1  # Triton's default (INT32_MAX) for both directions

_STATUS = {code: StatusCode[code.grpc_status_name] for code in ErrorCode}

_COMPRESSION_LEVELS = {"none": 0, "low": 1, "medium": 2, "high": 3}

# What one ModelStreamInfer call may hold (see ModelStreamInfer): requests running, and
# responses waiting for a client that does not read them
STREAM_IN_FLIGHT = 256
STREAM_RESPONSES = 256


class _Stream:
    """An open ModelStreamInfer call's held state: its responses not yet written, and its
    requests' tasks."""

    __slots__ = ("out", "tasks")

    def __init__(self) -> None:
        self.out: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()
        self.tasks: set[asyncio.Task] = set()

    def held(self) -> int:
        return self.out.qsize() + len(self.tasks)


@dataclass
class GrpcOptions:
    """Server settings; names follow tritonserver's --grpc-* flags (times in milliseconds)."""

    max_send_message_length: int = MAX_GRPC_MESSAGE_SIZE
    max_receive_message_length: int = MAX_GRPC_MESSAGE_SIZE
    # --grpc-infer-response-compression-level: none | low | medium | high (gzip when not none).
    # Compressed requests (gzip, deflate) are always accepted.
    compression_level: str = "none"
    keepalive_time_ms: int = 7_200_000
    keepalive_timeout_ms: int = 20_000
    keepalive_permit_without_calls: bool = False
    http2_max_pings_without_data: int = 2
    http2_min_recv_ping_interval_without_data_ms: int = 300_000
    http2_max_ping_strikes: int = 2
    max_connection_age_ms: int | None = None
    max_connection_age_grace_ms: int | None = None
    # a connection that has not sent its HTTP/2 preface and SETTINGS by then is closed (grpc
    # C-core's GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS and its default); the h2 engine only
    handshake_timeout_ms: int = 120_000
    # SO_REUSEPORT: several front-end processes accept on one port (frontend_processes.py);
    # grpcio sets it on its own (grpc.so_reuseport defaults to on)
    reuse_port: bool = False
    # --grpc-header-forward-pattern: matching metadata become request parameters
    header_forward_pattern: str = ""
    # --grpc-use-ssl and friends: PEM file paths.
    use_ssl: bool = False
    ssl_server_cert: str = ""
    ssl_server_key: str = ""
    ssl_root_cert: str = ""
    ssl_mutual_auth: bool = False
    extra_channel_args: list[tuple[str, Any]] = field(default_factory=list)
    # --grpc-restricted-protocol: category -> (metadata key, value) a call must carry
    restricted: dict[str, tuple[str, str]] = field(default_factory=dict)
    # "h2": HTTP/2 by libnghttp2 on the server's event loop (h2_server.py); "grpcio": grpc.aio
    engine: str = "h2"

    def channel_args(self) -> list[tuple[str, Any]]:
        level = _COMPRESSION_LEVELS.get(self.compression_level)
        if level is None:
            raise TritonError.invalid_arg(
                f"invalid gRPC compression level '{self.compression_level}': use none, low, medium or high")
        args: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", self.max_send_message_length),
            ("grpc.max_receive_message_length", self.max_receive_message_length),
            ("grpc.keepalive_time_ms", self.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", self.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", int(self.keepalive_permit_without_calls)),
            ("grpc.http2.max_pings_without_data", self.http2_max_pings_without_data),
            ("grpc.http2.min_ping_interval_without_data_ms",
             self.http2_min_recv_ping_interval_without_data_ms),
            ("grpc.http2.max_ping_strikes", self.http2_max_ping_strikes),
            ("grpc.so_reuseport", 0),
        ]
        if self.max_connection_age_ms is not None:
            args.append(("grpc.max_connection_age_ms", self.max_connection_age_ms))
        if self.max_connection_age_grace_ms is not None:
            args.append(("grpc.max_connection_age_grace_ms", self.max_connection_age_grace_ms))
        if level:
            args.append(("grpc.default_compression_level", level))
        args.extend(self.extra_channel_args)
        return args

    def compression(self) -> grpc.Compression | None:
        import grpc

        return None if self.compression_level == "none" else grpc.Compression.Gzip

    def credentials(self) -> grpc.ServerCredentials | None:
        if not self.use_ssl:
            return None

        def read(path: str) -> bytes:
            try:
                with open(path, "rb") as f:
                    return f.read()
            except OSError as e:
                raise TritonError.invalid_arg(f"cannot read SSL file '{path}': {e.strerror}") from None

        root = read(self.ssl_root_cert) if self.ssl_root_cert else None
        import grpc

        return grpc.ssl_server_credentials(
            [(read(self.ssl_server_key), read(self.ssl_server_cert))],
            root_certificates=root, require_client_auth=self.ssl_mutual_auth)


async def _abort(context: Any, err: TritonError) -> None:
    await abort(context, _STATUS[err.code], err.message)


def _unimplemented(what: str) -> TritonError:
    return TritonError.unsupported(what)


_SHM_OFF = "client shared memory is disabled: start the server with --allow-client-shm=true"


class InferenceServicer:
    """Every RPC of GRPCInferenceService, each a thin translation onto the Server."""

    def __init__(self, server: Server) -> None:
        self.server = server
        # The reading tasks of open ModelStreamInfer calls; at shutdown they stop reading,
        # so an idle stream ends at once and a busy one once its requests have answered.
        self._stream_readers: set[asyncio.Task] = set()
        self.streams: set[_Stream] = set()  # the open ModelStreamInfer calls
        self._closing = False
        self.header_forward: HeaderForward | None = None  # GrpcOptions.header_forward_pattern

    def close_streams(self) -> None:
        """Shutdown: every open stream stops reading and ends when its requests are done."""
        self._closing = True
        for t in list(self._stream_readers):
            t.cancel()

    # health and metadata ---------------------------------------------------------
    async def ServerLive(self, request, context):  # noqa: N802
        return pb.ServerLiveResponse(live=self.server.is_live())

    async def ServerReady(self, request, context):  # noqa: N802
        return pb.ServerReadyResponse(ready=self.server.is_ready())

    async def ModelReady(self, request, context):  # noqa: N802
        try:
            return pb.ModelReadyResponse(ready=self.server.model_ready(request.name, request.version))
        except TritonError as e:
            await _abort(context, e)

    async def ServerMetadata(self, request, context):  # noqa: N802
        md = self.server.metadata()
        return pb.ServerMetadataResponse(name=md["name"], version=md["version"],
                                         extensions=md["extensions"])

    async def ModelMetadata(self, request, context):  # noqa: N802
        try:
            md = self.server.model_metadata(request.name, request.version)
        except TritonError as e:
            await _abort(context, e)
            return None
        out = pb.ModelMetadataResponse(name=md["name"], versions=md["versions"], platform=md["platform"])
        for t in md["inputs"]:
            out.inputs.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        for t in md["outputs"]:
            out.outputs.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        return out

    async def ModelConfig(self, request, context):  # noqa: N802
        try:
            cfg = self.server.model_config(request.name, request.version)
            return pb.ModelConfigResponse(config=config_to_proto(cfg))
        except TritonError as e:
            await _abort(context, e)

    # inference ---------------------------------------------------------------------
    def _encode(self, resp, requested) -> pb.ModelInferResponse:
        classify = None
        if requested is not None and any(o.classification for o in requested):
            classify = classifier_for(self.server, resp.model_name, resp.model_version)
        return codec.encode_response(resp, requested, self.server.shm_io, classify)

    async def _infer(self, msg: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        req = codec.decode_request(msg, self.server.shm_io)
        self._forward_metadata(req, context)
        resp = await self.server.infer_async(req, _DECOUPLED)
        return self._encode(resp, req.outputs)

    def _forward_metadata(self, req: Any, context: Any) -> None:
        if self.server.traces.exporter is not None:  # opentelemetry: continue the client's trace
            for k, v in context.invocation_metadata():
                if k == "traceparent" and isinstance(v, str):
                    req.traceparent = v
        fwd = self.header_forward
        if fwd is not None:
            req.parameters = fwd.forward(req.parameters, (
                (k, v) for k, v in context.invocation_metadata() if isinstance(v, str)))

    async def ModelInfer(self, request, context):  # noqa: N802
        if self.server.log_settings.log_verbose_level > 0:
            log.log(VERBOSE, "gRPC ModelInfer: model '%s' version '%s' id '%s'",
                    request.model_name, request.model_version, request.id)
        try:
            return await self._infer(request, context)
        except TritonError as e:
            await _abort(context, e)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a bug must not look like a dropped connection
            await abort(context, StatusCode.INTERNAL, as_triton_error(e, "gRPC ModelInfer").message)

    async def ModelStreamInfer(self, request_iterator, context):  # noqa: N802
        """Requests run concurrently; one writer sends responses as they complete.

        What a stream holds is bounded, so that a client that sends on and never reads its
        responses cannot grow the server without end: at most STREAM_RESPONSES responses wait
        for the writer (a request's task waits for room), and at most STREAM_IN_FLIGHT requests
        run; beyond that no more messages are taken, so the transport's flow control (a
        stream's data is acknowledged as its messages are taken) holds the client back."""
        st = _Stream()
        out, tasks = st.out, st.tasks
        room = asyncio.Semaphore(STREAM_RESPONSES)
        slots = asyncio.Semaphore(STREAM_IN_FLIGHT)

        async def put(item: pb.ModelStreamInferResponse) -> None:
            await room.acquire()  # released as the writer takes the response
            out.put_nowait(item)

        async def one(msg: pb.ModelInferRequest) -> None:
            p = msg.parameters.get("triton_enable_empty_final_response") if msg.parameters else None
            empty_final = p is not None and p.WhichOneof("parameter_choice") == "bool_param" \
                and p.bool_param
            try:
                req = codec.decode_request(msg, self.server.shm_io)
                self._forward_metadata(req, context)
                async for resp, final in self.server.infer_stream(req):
                    if resp is None:
                        # A decoupled model's bare FINAL flag: sent only when the client asked.
                        if final and empty_final:
                            r = pb.ModelInferResponse(model_name=msg.model_name, id=msg.id)
                            r.parameters["triton_final_response"].bool_param = True
                            await put(pb.ModelStreamInferResponse(infer_response=r))
                        continue
                    if resp.error is not None:
                        await put(_stream_error(msg, resp.error.message))
                        continue
                    r = self._encode(resp, req.outputs)
                    # Marked on every response, as Triton does (a model that is not decoupled
                    # answers once, and that answer is final).
                    r.parameters["triton_final_response"].bool_param = final
                    await put(pb.ModelStreamInferResponse(infer_response=r))
            except TritonError as e:
                await put(_stream_error(msg, e.message))
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - an error response on the stream
                await put(_stream_error(msg, as_triton_error(e, "gRPC ModelStreamInfer").message))

        def done(t: asyncio.Task) -> None:
            tasks.discard(t)
            slots.release()

        async def reader() -> None:
            try:
                try:
                    requests = aiter(request_iterator)
                    while True:
                        await slots.acquire()  # a request slot before the next message is taken
                        try:
                            msg = await anext(requests)
                        except StopAsyncIteration:
                            break
                        t = asyncio.create_task(one(msg))
                        tasks.add(t)
                        t.add_done_callback(done)
                except asyncio.CancelledError:
                    if not self._closing:
                        raise
                # close_streams() may cancel this wait too: asyncio.wait leaves the tasks running
                while tasks:
                    try:
                        await asyncio.wait(list(tasks))
                    except asyncio.CancelledError:
                        if not self._closing:
                            raise
            finally:
                out.put_nowait(None)  # not counted in room: the end always gets through

        read_task = asyncio.create_task(reader())
        if self._closing:
            read_task.cancel()
        self._stream_readers.add(read_task)
        read_task.add_done_callback(self._stream_readers.discard)
        self.streams.add(st)
        try:
            while True:
                item = await out.get()
                if item is None:
                    break
                room.release()
                await context.write(item)
        finally:
            self.streams.discard(st)
            if not read_task.done():
                read_task.cancel()
            for t in list(tasks):
                t.cancel()

    # statistics, repository, logging, trace -------------------------------------------
    async def _across_processes(self, call: Any, *args: Any) -> Any:
        """``call(*args)``, which with --frontend-processes N > 1 waits on the other
        processes' sockets: then on a thread, never holding the loop."""
        if self.server.peers is None:
            return call(*args)
        return await asyncio.to_thread(call, *args)

    async def ModelStatistics(self, request, context):  # noqa: N802
        try:
            stats = await self._across_processes(self.server.statistics, request.name or None,
                                                 request.version)
        except TritonError as e:
            await _abort(context, e)
            return None
        return codec.statistics_to_proto(stats)

    async def RepositoryIndex(self, request, context):  # noqa: N802
        if request.repository_name:
            await _abort(context, _unimplemented(
                "'repository_name' specification is not supported"))
        try:
            rows = await asyncio.to_thread(self.server.repository_index, request.ready)
        except TritonError as e:
            await _abort(context, e)
            return None
        out = pb.RepositoryIndexResponse()
        for r in rows:
            out.models.add(name=r["name"], version=r.get("version", ""), state=r.get("state", ""),
                           reason=r.get("reason", ""))
        return out

    async def RepositoryModelLoad(self, request, context):  # noqa: N802
        if request.repository_name:
            await _abort(context, _unimplemented("'repository_name' specification is not supported"))
        config: str | None = None
        files: dict[str, Any] = {}
        try:
            for key, p in request.parameters.items():
                which = p.WhichOneof("parameter_choice")
                if key == "config":
                    if which != "string_param":
                        raise TritonError.invalid_arg("the 'config' parameter must be a string_param")
                    config = p.string_param
                elif key.startswith("file:"):
                    if which != "bytes_param":
                        raise TritonError.invalid_arg(f"the '{key}' parameter must be a bytes_param")
                    files[key[len("file:"):]] = p.bytes_param
                else:
                    log.debug("ignoring load parameter '%s'", key)
            await asyncio.to_thread(self.server.load_model, request.model_name, config, files or None)
        except TritonError as e:
            await _abort(context, e)
            return None
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request, context):  # noqa: N802
        if request.repository_name:
            await _abort(context, _unimplemented("'repository_name' specification is not supported"))
        dependents = False
        p = request.parameters.get("unload_dependents") if request.parameters else None
        if p is not None:
            dependents = bool(codec.param_value(p))
        try:
            await asyncio.to_thread(self.server.unload_model, request.model_name, dependents)
        except TritonError as e:
            await _abort(context, e)
            return None
        return pb.RepositoryModelUnloadResponse()

    async def LogSettings(self, request, context):  # noqa: N802
        settings = self.server.log_settings
        try:
            if request.settings:
                changes = {}
                for key, v in request.settings.items():
                    which = v.WhichOneof("parameter_choice")
                    if which is None:
                        continue
                    changes[key] = getattr(v, which)
                await self._across_processes(settings.update, changes)
        except TritonError as e:
            await _abort(context, e)
            return None
        out = pb.LogSettingsResponse()
        for key, value in settings.as_dict().items():
            sv = out.settings[key]
            if isinstance(value, bool):
                sv.bool_param = value
            elif isinstance(value, int):
                sv.uint32_param = value
            else:
                sv.string_param = str(value)
        return out

    async def TraceSetting(self, request, context):  # noqa: N802
        model = request.model_name or None
        try:
            if request.settings:
                changes = {k: (list(v.value) or None) for k, v in request.settings.items()}
                current = await self._across_processes(self.server.update_trace_setting, model,
                                                       changes)
            else:
                current = self.server.trace_setting(model)
        except TritonError as e:
            await _abort(context, e)
        out = pb.TraceSettingResponse()
        for key, value in current.items():
            out.settings[key].value.extend(value if isinstance(value, list) else [value])
        return out

    # shared memory -----------------------------------------------------------------------
    def _shm(self) -> Any:
        reg = self.server.shm_registry
        if reg is None:
            raise _unimplemented(_SHM_OFF)
        return reg

    async def SystemSharedMemoryStatus(self, request, context):  # noqa: N802
        try:
            rows = self._shm().status(request.name or None)
        except TritonError as e:
            await _abort(context, e)
            return None
        out = pb.SystemSharedMemoryStatusResponse()
        for r in rows:
            out.regions[str(r["name"])].CopyFrom(pb.SystemSharedMemoryStatusResponse.RegionStatus(
                name=str(r["name"]), key=str(r["key"]), offset=int(r.get("offset", 0)),
                byte_size=int(r["byte_size"])))
        return out

    async def SystemSharedMemoryRegister(self, request, context):  # noqa: N802
        try:
            await asyncio.to_thread(self._shm().register, request.name, request.key, request.offset,
                                    request.byte_size)
        except TritonError as e:
            await _abort(context, e)
            return None
        return pb.SystemSharedMemoryRegisterResponse()

    async def SystemSharedMemoryUnregister(self, request, context):  # noqa: N802
        try:
            reg = self._shm()
            if request.name:
                await asyncio.to_thread(reg.unregister, request.name)
            else:
                await asyncio.to_thread(reg.unregister_all)
        except TritonError as e:
            await _abort(context, e)
            return None
        return pb.SystemSharedMemoryUnregisterResponse()

    def _cuda_shm(self) -> Any:
        reg = self.server.cuda_shm_registry
        if reg is None:
            raise _unimplemented(_SHM_OFF)
        return reg

    async def CudaSharedMemoryStatus(self, request, context):  # noqa: N802
        try:
            rows = self._cuda_shm().status(request.name or None)
        except TritonError as e:
            await _abort(context, e)
            return None
        out = pb.CudaSharedMemoryStatusResponse()
        for r in rows:
            out.regions[str(r["name"])].CopyFrom(pb.CudaSharedMemoryStatusResponse.RegionStatus(
                name=str(r["name"]), device_id=int(r["device_id"]), byte_size=int(r["byte_size"])))
        return out

    async def CudaSharedMemoryRegister(self, request, context):  # noqa: N802
        # raw_handle: the handle's 64 bytes (tritonclient.grpc decodes the base64 it is given)
        try:
            await asyncio.to_thread(self._cuda_shm().register, request.name, request.raw_handle,
                                    request.device_id, request.byte_size)
        except TritonError as e:
            await _abort(context, e)
            return None
        return pb.CudaSharedMemoryRegisterResponse()

    async def CudaSharedMemoryUnregister(self, request, context):  # noqa: N802
        try:
            reg = self._cuda_shm()
            if request.name:
                await asyncio.to_thread(reg.unregister, request.name)
            else:
                await asyncio.to_thread(reg.unregister_all)
        except TritonError as e:
            await _abort(context, e)
            return None
        return pb.CudaSharedMemoryUnregisterResponse()


def _stream_error(msg: pb.ModelInferRequest, message: str) -> pb.ModelStreamInferResponse:
    out = pb.ModelStreamInferResponse(error_message=message)
    out.infer_response.id = msg.id  # as Triton: only the id, so the client can match it
    return out


class GrpcFrontEnd:
    """The gRPC endpoint: ``await start()`` inside the server's event loop, ``await stop()``."""

    def __init__(self, server: Server, address: str = "0.0.0.0", port: int = 8001,
                 options: GrpcOptions | None = None, **kwargs: Any) -> None:
        self.server = server
        self.address = address
        self.port = port
        self.options = options or GrpcOptions(**kwargs)
        if options is not None and kwargs:
            raise TypeError("give either options or keyword settings, not both")
        if self.options.engine not in ("h2", "grpcio"):
            raise TritonError.invalid_arg(
                f"unknown gRPC engine '{self.options.engine}': use h2 or grpcio")
        self._grpc: grpc.aio.Server | None = None
        self._h2: H2Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # attached to the server's engine loop
        self.servicer = InferenceServicer(server)
        if self.options.header_forward_pattern:
            self.servicer.header_forward = HeaderForward(
                self.options.header_forward_pattern, "--grpc-header-forward-pattern")

    def _health_status(self, service: str) -> int:
        return health.SERVING if self.server.is_ready() else health.NOT_SERVING

    @property
    def bind_address(self) -> str:
        host = self.address
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{self.port}"

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.server.engine_loop.attach(self._loop)  # process-backed models run on this loop
        if self.options.engine == "h2":
            await self._start_h2()
        else:
            await self._start_grpcio()
        log.info("Started GRPCInferenceService at %s:%d", self.address, self.port)

    async def _start_h2(self) -> None:
        self.options.channel_args()  # the same checks as for grpcio
        h2 = H2Server(self.servicer, self.options, health.check_method(self._health_status))
        self.port = await h2.start(self.address, self.port)
        self._h2 = h2

    async def _start_grpcio(self) -> None:
        try:  # this engine's own imports (the native engine needs neither)
            import grpc
            from tritonclient.grpc import service_pb2_grpc as pb_grpc
        except ImportError as e:
            raise TritonError.unavailable(f"--grpc-engine grpcio needs grpcio: {e}") from None

        from .restricted import RestrictedProtocols

        opts = self.options
        interceptors = [RestrictedProtocols(opts.restricted)] if opts.restricted else []
        srv = grpc.aio.server(options=opts.channel_args(), compression=opts.compression(),
                              interceptors=interceptors)
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(self.servicer, srv)
        srv.add_generic_rpc_handlers((health.health_handler(self._health_status),))
        creds = opts.credentials()
        try:
            if creds is not None:
                bound = srv.add_secure_port(self.bind_address, creds)
            else:
                bound = srv.add_insecure_port(self.bind_address)
        except RuntimeError as e:
            raise TritonError.unavailable(
                f"failed to start gRPC service at {self.bind_address}: {e}") from None
        if bound == 0:
            raise TritonError.unavailable(f"failed to bind the gRPC service to {self.bind_address}")
        self.port = bound
        await srv.start()
        self._grpc = srv

    async def stop(self, grace: float | None = 5.0) -> None:
        srv, self._grpc = self._grpc, None
        h2, self._h2 = self._h2, None
        if srv is not None or h2 is not None:
            self.servicer.close_streams()  # else an idle open stream holds stop() for all of grace
        if srv is not None:
            await srv.stop(grace)
        if h2 is not None:
            await h2.stop(grace)
        if self._loop is not None:
            self.server.engine_loop.detach(self._loop)
            self._loop = None

    async def wait_for_termination(self) -> None:
        if self._grpc is not None:
            await self._grpc.wait_for_termination()
        elif self._h2 is not None:
            await self._h2.wait_closed()


# Triton's words (grpc_server.cc) for unary ModelInfer on a decoupled model
_DECOUPLED = "ModelInfer RPC doesn't support models with decoupled transaction policy"
