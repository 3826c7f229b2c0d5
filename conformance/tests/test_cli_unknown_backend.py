"""`triton conformance <name>` with a name no installed backend has fails at once (exit 2),
listing the backends there are, instead of running the suite to a page of skips."""

from __future__ import annotations

from triton_conformance.cli import main


def test_an_unknown_backend_fails_at_once_with_the_installed_names(capsys):
    assert main(["no-such-backend"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no installed backend is named 'no-such-backend' (installed: ")
    assert "`triton backends` lists them" in err
