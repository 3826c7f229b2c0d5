"""Summarise a ``python -X importtime`` log: how many modules, their total import time, and
where it goes (self time summed by top-level package, biggest first).

    python -X importtime -m triton_core --model-repository bench/models_ours 2> server.log
    python -X importtime -c "import triton_python_backend_utils._stub" 2> worker.log
    python bench/importtime_top.py server.log worker.log

(-X importtime is not inherited: the server's log holds the server's imports only; the
second command imports what a python backend worker imports before it loads the model.)
Times under -X importtime are inflated by its own bookkeeping; compare logs with logs.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def summarise(path: Path, top: int) -> str:
    by_package: collections.Counter[str] = collections.Counter()
    count = 0
    for line in path.read_text(errors="replace").splitlines():
        m = _LINE.match(line)
        if m:
            count += 1
            by_package[m[4].split(".")[0]] += int(m[1])
    total = sum(by_package.values())
    lines = [f"{path}: {count} modules, {total / 1000:.0f} ms (self times summed)"]
    lines += [f"  {us / 1000:7.1f} ms  {name}" for name, us in by_package.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logs", nargs="+", type=Path)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    print("\n\n".join(summarise(p, args.top) for p in args.logs))


if __name__ == "__main__":
    main()
