"""docs/writing-a-backend.md shows whole files: copied in order (``# file: PATH`` starts a file,
``# file: PATH (continued)`` appends a part to it), they make the example package that CI
runs the conformance suite on. This keeps the page and the package the same."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "writing-a-backend.md"
PACKAGE = ROOT / "docs" / "examples" / "triton-backend-numpyexpr"
MARKER = re.compile(r"^# file: (\S+)( \(continued\))?$")


def _files_of_the_page() -> dict[str, str]:
    files: dict[str, str] = {}
    for block in re.findall(r"^```\w+\n(.*?)^```", PAGE.read_text(), flags=re.S | re.M):
        first, _, body = block.partition("\n")
        m = MARKER.match(first)
        if m is None:
            continue
        path, continued = m.group(1), bool(m.group(2))
        if continued:
            assert path in files, f"'{path} (continued)' before the start of {path}"
            files[path] += "\n\n" + body  # parts are separated by two blank lines
        else:
            assert path not in files, f"{path} starts twice"
            files[path] = body
    return files


def test_the_tutorial_copied_in_order_is_the_example_package():
    files = _files_of_the_page()
    assert {"pyproject.toml", "triton_backend_numpyexpr/plugin.py",
            "triton_backend_numpyexpr/backend.py"} <= set(files)
    for path, text in files.items():
        assert text == (PACKAGE / path).read_text(), f"{path} differs from the example package's"
    python_files = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")}
    assert python_files <= set(files), f"files the page does not show: {python_files - set(files)}"
