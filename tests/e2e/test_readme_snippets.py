"""Every Python snippet of the README and the quickstart runs as written, against the example
repository served by the real `tritonserver` command (its port put where the snippet says
localhost:8000), from the root of the clone as the README says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "docs" / "quickstart.md"]


def _snippets() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        blocks = re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M)
        assert blocks, f"{page.name} has no Python snippet"
        found += [(f"{page.name}[{i}]", code) for i, code in enumerate(blocks)]
    return found


@pytest.mark.parametrize("where, code", _snippets(), ids=[w for w, _ in _snippets()])
def test_snippet_runs_as_written(examples_server, monkeypatch, where, code):
    monkeypatch.chdir(ROOT)
    code = code.replace("localhost:8000", examples_server.http_url)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, where, "exec"), {"__name__": "__snippet__"})  # noqa: S102 - the docs' code
    if "print(" in code:
        assert out.getvalue().strip(), f"{where} printed nothing"
