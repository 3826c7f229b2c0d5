"""A client's CUDA shared-memory regions, made in a child process as a real client makes them
(tritonclient's cuda_shared_memory utilities): CUDA refuses to open an IPC handle in the
process that made it, and GPU tests run the server in the test's own process."""

from __future__ import annotations

import base64
import subprocess
import sys

import numpy as np

# The child: an "in" region holding arange(n / 4) as float32 and an empty "out" region on GPU
# ``device``; prints their handles (base64), then "read" prints the out region, "quit" frees.
_CHILD = r"""
import base64, sys
import numpy as np
import tritonclient.utils.cuda_shared_memory as cshm
n, device = int(sys.argv[1]), int(sys.argv[2])
hin = cshm.create_shared_memory_region("in", n, device)
hout = cshm.create_shared_memory_region("out", n, device)
cshm.set_shared_memory_region(hin, [np.arange(n // 4, dtype=np.float32)])
print(cshm.get_raw_handle(hin).decode(), cshm.get_raw_handle(hout).decode(), flush=True)
for line in sys.stdin:
    if line.strip() != "read":
        break
    out = cshm.get_contents_as_numpy(hout, np.uint8, [n])
    print(base64.b64encode(out.tobytes()).decode(), flush=True)
    cshm.set_shared_memory_region(hout, [np.zeros(n, np.uint8)])
cshm.destroy_shared_memory_region(hin)
cshm.destroy_shared_memory_region(hout)
"""


class RegionClient:
    """``hin`` / ``hout``: the regions' raw handles (base64, as register_cuda_shared_memory
    takes them); ``read(dtype, shape)``: the out region's contents (then zeroed)."""

    def __init__(self, nbytes: int, device: int = 0) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(nbytes), str(device)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 2:
            self.proc.kill()
            raise RuntimeError("the region client failed to make its CUDA regions")
        self.hin, self.hout = line

    def read(self, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("read\n")
        self.proc.stdin.flush()
        raw = base64.b64decode(self.proc.stdout.readline())
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return np.frombuffer(raw[:n], dtype).reshape(shape)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait(60)

    def __enter__(self) -> RegionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
