"""The other front-end processes of `--frontend-processes N`, asked for their counts.

Each process answers on a Unix socket (``<folder>/<index>.sock``) from a thread of its
own, never from its event loop: a process whose loop waits on a peer's answer can
itself be asked at that moment without the two waiting on each other. The statistics
extension and the metrics endpoint sum what every process counted, so a client sees
one server whichever process its connection reached.

One request per connection: a JSON line ``{"op": ..., ...}``; the answer is one
JSON line ``{"ok": value}`` or ``{"error": text}``.
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .errors import ErrorCode, TritonError
from .logsettings import LOGGER

log = LOGGER

# a peer that does not answer within this time is left out of the sum (and logged)
TIMEOUT_S = 5.0

Handler = Callable[[dict[str, Any]], Any]


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class Peers:
    """This process's listener plus the addresses of the others."""

    def __init__(self, folder: str, index: int, count: int) -> None:
        self.folder = folder
        self.index = index
        self.count = count
        self._ops: dict[str, Handler] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def path(self, index: int) -> str:
        return os.path.join(self.folder, f"{index}.sock")

    def handle(self, op: str, handler: Handler) -> None:
        """``handler(request)`` answers ``op`` for the other processes (on a peer thread)."""
        self._ops[op] = handler

    def start(self) -> None:
        ops = self._ops

        class _Request(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                try:
                    req = json.loads(self.rfile.readline())
                    answer: dict[str, Any] = {"ok": ops[req["op"]](req)}
                except TritonError as e:  # passed on as it is: the client gets its words
                    answer = {"error": e.message, "code": e.code.name}
                except Exception as e:  # the asking process logs it; this one keeps serving
                    answer = {"error": f"{type(e).__name__}: {e}"}
                self.wfile.write(json.dumps(answer).encode() + b"\n")

        path = self.path(self.index)
        if os.path.exists(path):
            os.unlink(path)
        self._server = _Server(path, _Request)
        self._thread = threading.Thread(target=self._server.serve_forever, name="triton-peers",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            try:
                os.unlink(self.path(self.index))
            except FileNotFoundError:
                pass

    def ask_others(self, op: str, **args: Any) -> list[Any]:
        """Every other process's answer to ``op`` (those that fail are logged and left out)."""
        out = []
        for i, answer in self.ask_each(op, **args):
            if isinstance(answer, BaseException):
                log.warning("front-end process %d did not answer '%s': %s", i, op, answer)
            else:
                out.append(answer)
        return out

    def ask_one(self, index: int, op: str, **args: Any) -> Any:
        """Process ``index``'s answer (None, logged, when it fails)."""
        try:
            return self._ask(index, {"op": op, **args})
        except (OSError, ValueError, RuntimeError, TritonError) as e:
            log.warning("front-end process %d did not answer '%s': %s", index, op, e)
            return None

    def ask_each(self, op: str, **args: Any) -> list[tuple[int, Any]]:
        """(index, answer) of every other process; the answer is the exception when one
        failed (a TritonError as that process raised it)."""
        req = {"op": op, **args}

        def one(i: int) -> tuple[int, Any]:
            try:
                return i, self._ask(i, req)
            except (OSError, ValueError, RuntimeError, TritonError) as e:
                return i, e

        others = [i for i in range(self.count) if i != self.index]
        if len(others) <= 1:
            return [one(i) for i in others]
        # all at once: the caller (an event loop, for the statistics) waits for the slowest
        # one, not for the sum
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=len(others),
                                                thread_name_prefix="triton-peers-ask")
        return list(self._pool.map(one, others))

    def _ask(self, index: int, req: dict[str, Any]) -> Any:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(TIMEOUT_S)
            s.connect(self.path(index))
            s.sendall(json.dumps(req).encode() + b"\n")
            with s.makefile("rb") as f:
                answer = json.loads(f.readline())
        if "code" in answer:
            raise TritonError(ErrorCode[answer["code"]], answer["error"])
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer["ok"]


# ---------------------------------------------------------------------------------
# sums


def merge_model_stats(parts: list[dict]) -> dict:
    """The statistics extension's answers of several processes as one: counts and times
    add up, last_inference is the latest, batch_stats add up by batch size."""
    by_key: dict[tuple[str, str], dict] = {}
    order: list[tuple[str, str]] = []
    for part in parts:
        for m in part.get("model_stats", []):
            key = (m["name"], m["version"])
            if key not in by_key:
                by_key[key] = json.loads(json.dumps(m))  # a copy to add into
                order.append(key)
            else:
                _add_model(by_key[key], m)
    return {"model_stats": [by_key[k] for k in order]}


def _add_model(into: dict, m: dict) -> None:
    into["last_inference"] = max(into["last_inference"], m["last_inference"])
    into["inference_count"] += m["inference_count"]
    into["execution_count"] += m["execution_count"]
    for k, d in m["inference_stats"].items():
        _add_duration(into["inference_stats"].setdefault(k, {"count": 0, "ns": 0}), d)
    batches = {b["batch_size"]: b for b in into["batch_stats"]}
    for b in m["batch_stats"]:
        mine = batches.get(b["batch_size"])
        if mine is None:
            batches[b["batch_size"]] = json.loads(json.dumps(b))
            continue
        for k in ("compute_input", "compute_infer", "compute_output"):
            _add_duration(mine[k], b[k])
    into["batch_stats"] = [batches[k] for k in sorted(batches)]


def _add_duration(into: dict, d: dict) -> None:
    into["count"] += d["count"]
    into["ns"] += d["ns"]


# (family name, type, help, [(sample name, labels, value)])
Family = tuple[str, str, str, list[tuple[str, dict[str, str], float]]]

# gauges that do not add up over processes: the largest is reported
_MAX_GAUGES = frozenset({"nv_model_load_duration_secs"})


def merge_families(parts: list[list[Family]]) -> list[Family]:
    """Model metric families of several processes as one: every sample adds up (counters,
    histogram buckets, the pending-request gauge), except the load time (the largest)."""
    fams: dict[str, tuple[str, str, dict[tuple[str, tuple], float]]] = {}
    for part in parts:
        for name, typ, doc, samples in part:
            _, _, values = fams.setdefault(name, (typ, doc, {}))
            for sname, labels, v in samples:
                key = (sname, tuple(sorted(labels.items())))
                if key in values:
                    values[key] = max(values[key], v) if name in _MAX_GAUGES else values[key] + v
                else:
                    values[key] = v
    return [(name, typ, doc, [(s, dict(lab), v) for (s, lab), v in values.items()])
            for name, (typ, doc, values) in fams.items()]
