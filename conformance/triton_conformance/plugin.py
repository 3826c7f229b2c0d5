"""The pytest plugin (entry point ``pytest11``): options, fixtures, capability
skips, strict expected failures, the JSON report and the closing summary.

Inert unless the session runs conformance tests: it only adds options and
fixtures, and reports only on tests of ``triton_conformance.suite`` (or tests
marked ``capability``).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

CAPABILITY_HELP = (
    "capability(name): the capability a conformance test checks; skipped with the backend's "
    "reason when the backend does not declare it")

# capability name -> (Capabilities attribute, or None when always required)
GATED = {
    "batching": "batching",
    "bytes_any": "bytes_any",
    "decoupled": "decoupled",
    "sequence": "sequence",
    "gpu": "gpu",
    "variable_dims": "variable_dims",
    "multiple_instances": "multiple_instances",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("triton-conformance", "triton-core backend conformance suite")
    g.addoption("--triton-backend", default=None, metavar="NAME",
                help="the backend under test (config.pbtxt `backend:` name)")
    g.addoption("--triton-report", default=None, metavar="FILE",
                help="write a JSON report of the conformance run")
    g.addoption("--triton-xfail", default=None, metavar="FILE",
                help="known failures: one test id per line (# comments); run strictly")
    g.addoption("--triton-instance-kind", default=None, choices=("KIND_GPU",),
                help="run every model's instances as this kind (default: as the models say)")
    parser.addini("triton_backend", "the backend under test (as --triton-backend)", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", CAPABILITY_HELP)
    config._triton_conformance = _State(config)  # type: ignore[attr-defined]  # noqa: SLF001


# ---------------------------------------------------------------------------
# ids and expected failures


def conformance_id(item: pytest.Item) -> str:
    """Stable across machines and install locations: '<file>::<test>[<params>]'."""
    return f"{item.path.name}::{item.name}"


def read_xfail_file(path: str | Path) -> dict[str, str]:
    """``<test id>  # reason`` per line; blank lines and lines starting with # are ignored."""
    out: dict[str, str] = {}
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tid, _, reason = line.partition("#")
        out[tid.strip()] = reason.strip() or "listed in the expected-failures file"
    return out


def _is_conformance(item: pytest.Item) -> bool:
    mod = getattr(getattr(item, "module", None), "__name__", "")
    return mod.startswith("triton_conformance.") or item.get_closest_marker("capability") is not None


def _capability(item: pytest.Item) -> str:
    m = item.get_closest_marker("capability")
    return m.args[0] if m and m.args else "core"


class _State:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        xf = config.getoption("--triton-xfail")
        self.xfail: dict[str, str] = read_xfail_file(xf) if xf else {}
        self.xfail_used: set[str] = set()
        self.results: dict[str, dict[str, Any]] = {}
        self.harness: Any = None
        self.started = time.monotonic()

    def record(self, item_id: str, cap: str, dtype: str, outcome: str, reason: str,
               duration: float) -> None:
        r = self.results.setdefault(item_id, {"id": item_id, "capability": cap, "outcome": "passed",
                                              "reason": "", "duration": 0.0})
        if dtype:
            r["dtype"] = dtype
        r["duration"] = round(r["duration"] + duration, 4)
        order = ["passed", "skipped", "xfailed", "xpassed", "failed", "error"]
        if order.index(outcome) >= order.index(r["outcome"]) or r["outcome"] == "passed":
            r["outcome"] = outcome
            r["reason"] = reason


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    st: _State = config._triton_conformance  # type: ignore[attr-defined]  # noqa: SLF001
    for item in items:
        if not _is_conformance(item):
            continue
        tid = conformance_id(item)
        item.user_properties.append(("conformance_id", tid))
        if tid in st.xfail:
            st.xfail_used.add(tid)
            item.add_marker(pytest.mark.xfail(reason=st.xfail[tid], strict=True))


# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def triton_backend_name(request: pytest.FixtureRequest) -> str:
    """The backend under test; override this fixture in a backend's own conftest.py."""
    name = request.config.getoption("--triton-backend") or request.config.getini("triton_backend")
    if not name:
        pytest.skip("no backend under test: run `triton conformance <backend>` or pass "
                    "--triton-backend <backend>")
    return name


@pytest.fixture(scope="session")
def conformance_harness(triton_backend_name: str, tmp_path_factory: pytest.TempPathFactory,
                        request: pytest.FixtureRequest):
    """The session's Harness (server over the backend's models). Never skips by itself."""
    from .harness import Harness

    h = Harness(triton_backend_name, tmp_path_factory.mktemp("conformance"),
                request.config.getoption("--triton-instance-kind"))
    request.config._triton_conformance.harness = h  # type: ignore[attr-defined]  # noqa: SLF001
    yield h
    h.close()


@pytest.fixture
def triton_harness(conformance_harness, request: pytest.FixtureRequest):
    """The Harness, skipping the test when the backend cannot be exercised here or the test's
    capability is not declared."""
    h = conformance_harness
    if h.skip_reason:
        pytest.skip(h.skip_reason)
    cap = _capability(request.node)
    attr = GATED.get(cap)
    if attr is not None and not getattr(h.caps, attr):
        note = h.caps.notes.get(cap, "")
        pytest.skip(f"backend '{h.backend}' does not declare '{cap}'" + (f": {note}" if note else ""))
    dtype = getattr(request.node, "callspec", None)
    dt = dtype.params.get("dtype") if dtype is not None else None
    if dt is not None and dt not in h.caps.dtypes:
        note = h.caps.notes.get(dt, "")
        pytest.skip(f"backend '{h.backend}' does not declare datatype {dt}" + (f": {note}" if note else ""))
    return h


# ---------------------------------------------------------------------------
# reporting


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    rep: pytest.TestReport = outcome.get_result()
    if not _is_conformance(item):
        return
    st: _State = item.config._triton_conformance  # type: ignore[attr-defined]  # noqa: SLF001
    tid = conformance_id(item)
    cs = getattr(item, "callspec", None)
    dtype = str(cs.params.get("dtype", "")) if cs is not None else ""
    wasxfail = getattr(rep, "wasxfail", None)
    reason = ""
    if rep.skipped:
        if wasxfail is not None:
            res, reason = "xfailed", wasxfail
        else:
            res = "skipped"
            lr = rep.longrepr
            reason = lr[2] if isinstance(lr, tuple) else str(lr)
            reason = reason.removeprefix("Skipped: ")
    elif rep.failed:
        res = "failed" if rep.when == "call" else "error"
        crash = getattr(rep.longrepr, "reprcrash", None)
        reason = crash.message if crash is not None else str(rep.longrepr)[-500:]
        if "XPASS(strict)" in str(rep.longrepr):
            res, reason = "xpassed", "passed but listed as an expected failure (strict)"
    else:
        if rep.when != "call":
            if rep.when == "setup":
                st.record(tid, _capability(item), dtype, "passed", "", rep.duration)
            return
        res = "passed"
    st.record(tid, _capability(item), dtype, res, reason, rep.duration)


def build_report(st: _State) -> dict[str, Any]:
    results = sorted(st.results.values(), key=lambda r: r["id"])
    counts = Counter(r["outcome"] for r in results)
    per_cap: dict[str, Counter] = {}
    for r in results:
        per_cap.setdefault(r["capability"], Counter())[r["outcome"]] += 1
        if r.get("dtype"):
            per_cap.setdefault(f"dtype:{r['dtype']}", Counter())[r["outcome"]] += 1
    h = st.harness
    backend: dict[str, Any] = {"name": st.config.getoption("--triton-backend") or ""}
    caps: dict[str, Any] = {}
    if h is not None:
        backend["name"] = h.backend
        if h.entry is not None:
            backend.update(distribution=h.entry.distribution, version=h.entry.version,
                           abi=list(h.entry.abi) if h.entry.abi else None, status=h.entry.status,
                           reason=h.entry.reason)
        if h.spec is not None:
            c = h.spec.capabilities
            caps = {"dtypes": list(c.dtypes), "batching": c.batching, "max_batch_size": c.max_batch_size,
                    "variable_dims": c.variable_dims, "bytes_any": c.bytes_any, "decoupled": c.decoupled,
                    "sequence": c.sequence, "gpu": c.gpu, "multiple_instances": c.multiple_instances,
                    "identity": c.identity, "add_sub": c.add_sub,
                    "platforms": list(c.platforms), "notes": dict(c.notes)}
        backend["models"] = {n: {"role": r.role, "datatype": r.datatype} for n, r in h.roles.items()}
        if h.skip_reason:
            backend["skip_reason"] = h.skip_reason
    import triton_core

    from . import __version__
    return {
        "suite": {"name": "triton-conformance", "version": __version__,
                  "core_version": triton_core.__version__, "abi": list(triton_core.ABI_VERSION)},
        "backend": backend,
        "capabilities": caps,
        "counts": {k: counts.get(k, 0) for k in ("passed", "failed", "error", "skipped", "xfailed",
                                                  "xpassed")} | {"total": len(results)},
        "per_capability": {k: dict(v) for k, v in sorted(per_cap.items())},
        "unused_xfail": sorted(set(st.xfail) - st.xfail_used),
        "duration_s": round(time.monotonic() - st.started, 2),
        "tests": results,
    }


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    st: _State | None = getattr(session.config, "_triton_conformance", None)
    if st is None or not st.results:
        return
    path = session.config.getoption("--triton-report")
    if path:
        Path(path).write_text(json.dumps(build_report(st), indent=2) + "\n")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    st: _State | None = getattr(config, "_triton_conformance", None)
    if st is None or not st.results:
        return
    rep = build_report(st)
    tr = terminalreporter
    b = rep["backend"]
    tr.section("triton conformance summary")
    what = b.get("distribution") or "?"
    tr.write_line(f"backend {b['name']!r} ({what} {b.get('version', '')}, abi "
                  f"{'.'.join(map(str, b.get('abi') or [])) or '?'}) on triton-core "
                  f"{rep['suite']['core_version']}")
    c = rep["counts"]
    tr.write_line(", ".join(f"{c[k]} {k}" for k in ("passed", "failed", "error", "skipped", "xfailed",
                                                     "xpassed") if c[k]) + f" of {c['total']}")
    if b.get("skip_reason"):
        tr.write_line(f"not exercised: {b['skip_reason']}")
    rows = [(k, v) for k, v in rep["per_capability"].items() if not k.startswith("dtype:")]
    for cap, counts in rows:
        tr.write_line(f"  {cap:<20} " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    dts = {k[6:]: v for k, v in rep["per_capability"].items() if k.startswith("dtype:")}
    if dts:
        declared = set((rep.get("capabilities") or {}).get("dtypes") or ())
        ok = [d for d, v in dts.items() if set(v) <= {"passed"}]
        skipped = [d for d, v in dts.items() if set(v) == {"skipped"}]
        bad = [d for d in dts if d not in ok and d not in skipped]
        line = f"  dtypes passing: {', '.join(ok) or '-'}"
        if [d for d in skipped if d not in declared]:
            line += f"; not declared: {', '.join(d for d in skipped if d not in declared)}"
        if [d for d in skipped if d in declared]:  # declared, yet not exercised (see the skip reasons)
            line += f"; declared but skipped: {', '.join(d for d in skipped if d in declared)}"
        tr.write_line(line + (f"; with failures: {', '.join(bad)}" if bad else ""))
    if rep["unused_xfail"]:
        tr.write_line(f"expected-failure ids matching no test: {', '.join(rep['unused_xfail'])}",
                      yellow=True)
    for r in rep["tests"]:
        if r["outcome"] in ("failed", "error", "xpassed"):
            tr.write_line(f"  {r['outcome'].upper()} {r['id']}: {r['reason'][:200]}", red=True)
    path = config.getoption("--triton-report")
    if path:
        tr.write_line(f"report: {path}")
