import pytest


@pytest.fixture(autouse=True)
def _no_entry_point_plugins(monkeypatch):
    # Core tests register their own test backend; installed plugins stay out.
    monkeypatch.setenv("TRITON_CORE_DISABLE_PLUGIN_AUTOLOAD", "1")
