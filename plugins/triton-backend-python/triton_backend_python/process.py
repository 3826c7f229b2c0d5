"""A worker's operating-system process: spawning it, forwarding its stderr, killing it,
and saying why it exited.

The process runs triton_python_backend_utils._stub under the model's interpreter. The
bootstrap (_BOOT) reports an import failure (a foreign interpreter without numpy, a
python too old) as a FATAL message on the async channel before it exits, so the
diagnosis can say why instead of "exit code 3".
"""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
import threading

_BOOT = (
    "import sys\n"
    "try:\n"
    "    from triton_python_backend_utils._stub import main\n"
    "except BaseException as e:\n"
    "    import marshal, socket, struct\n"
    "    m = '%s: %s (python %s at %s)' % (type(e).__name__, e, sys.version.split()[0],"
    " sys.executable)\n"
    "    d = marshal.dumps((27, m), 2)\n"
    "    socket.socket(fileno=int(sys.argv[2])).sendall(struct.pack('<I', len(d)) + d)\n"
    "    sys.exit(3)\n"
    "main()\n"
)


class WorkerProcess:
    """The process; ``fatal`` is the bootstrap's reason for not starting, when it sent one."""

    def __init__(self, python: str) -> None:
        self.python = python
        self.proc: subprocess.Popen | None = None
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self.fatal = ""
        self._stderr_thread: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else -1

    def spawn(self, exec_fd: int, async_fd: int, env: dict[str, str], cwd: str) -> None:
        """Starts the worker on the two channel ends (raises OSError)."""
        cmd = [self.python, "-c", _BOOT, str(exec_fd), str(async_fd)]
        self.proc = subprocess.Popen(cmd, pass_fds=(exec_fd, async_fd), env=env,
                                     stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd)
        t = threading.Thread(target=self._forward_stderr, name=f"pb-stderr-{self.pid}", daemon=True)
        t.start()
        self._stderr_thread = t

    def _forward_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        out = sys.stderr
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace")
            self.stderr_tail.append(line.rstrip("\n"))
            try:
                out.write(line)
                out.flush()
            except (OSError, ValueError):
                pass

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def kill(self) -> None:
        if self.running():
            try:
                self.proc.kill()  # type: ignore[union-attr]
            except OSError:
                pass

    def wait_exit_reason(self, timeout: float = 2.0) -> str:
        """Why the process is gone: its exit status, waited for up to ``timeout`` (it may
        still be exiting when its channel closes), the bootstrap's FATAL message, and its
        last lines of stderr. A query: it changes nothing."""
        rc = None
        if self.proc is not None:
            try:
                rc = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                rc = None
        if rc is None:
            why = "the channel closed"
        elif rc < 0:
            try:
                why = f"killed by signal {signal.Signals(-rc).name}"
            except ValueError:
                why = f"killed by signal {-rc}"
        else:
            why = f"exit code {rc}"
        parts = [why]
        if self.fatal:
            parts.append(f"the worker could not start under '{self.python}': {self.fatal}")
        tail = [x for x in self.stderr_tail if x.strip()][-5:]
        if tail:
            parts.append("last output: " + " | ".join(tail))
        return "; ".join(parts)

    def reap(self, timeout: float = 5.0) -> None:
        """Waits for the process to exit (after finalize), killing it past ``timeout``."""
        proc = self.proc
        if proc is not None:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def join(self, timeout: float) -> None:
        t = self._stderr_thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=timeout)
