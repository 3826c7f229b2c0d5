import types

from triton_core import abi
from triton_core.models.registry import BackendRegistry


def _module(*specs, raises=None):
    m = types.SimpleNamespace()

    @abi.hookimpl
    def triton_backends():
        if raises:
            raise raises
        return list(specs)

    m.triton_backends = triton_backends
    return m


def _factory(ctx):
    return abi.Backend()


def test_registry_statuses():
    reg = BackendRegistry()
    reg.register_plugin(_module(abi.BackendSpec(name="a", factory=_factory, platforms=("pa",),
                                                default_model_filename="model.a")), "pa")
    reg.register_plugin(_module(abi.BackendSpec(name="a", factory=_factory)), "dup")
    reg.register_plugin(_module(abi.BackendSpec(name="old", factory=_factory, abi=(0, 9))), "old")
    reg.register_plugin(_module(abi.BackendSpec(name="new", factory=_factory, abi=(1, 99))), "new")
    reg.register_plugin(_module(abi.BackendSpec(name="na", factory=_factory,
                                                available=lambda: "needs macOS")), "na")
    reg.register_plugin(_module(raises=RuntimeError("boom")), "broken")
    reg.register_plugin(_module("not a spec"), "junk")
    by = {(e.plugin, e.name): e for e in reg.entries}
    assert by[("pa", "a")].status == "available"
    assert "already provided by plugin 'pa'" in by[("dup", "a")].reason
    assert "incompatible ABI 0.9" in by[("old", "old")].reason
    assert by[("new", "new")].status == "failed"
    assert by[("na", "na")].status == "unavailable" and by[("na", "na")].reason == "needs macOS"
    assert "boom" in by[("broken", "broken")].reason
    assert by[("junk", "junk")].status == "failed"
    assert reg.for_platform("pa").name == "a"
    assert reg.for_model_files({"model.a"}).name == "a"
    b1 = reg.backend("a")
    assert reg.backend("a") is b1  # one Backend per process


def test_unavailable_backend_is_refused_unless_checking():
    import pytest

    from triton_core.errors import ErrorCode, TritonError

    reg = BackendRegistry()
    reg.register_plugin(_module(abi.BackendSpec(name="na", factory=_factory,
                                                available=lambda: "needs macOS")), "na")
    reg.register_plugin(_module(abi.BackendSpec(name="old", factory=_factory, abi=(0, 9))), "old")
    with pytest.raises(TritonError) as e:
        reg.backend("na")
    assert e.value.code is ErrorCode.UNAVAILABLE and "needs macOS" in e.value.message
    # `triton check` may still read and validate the backend's models
    assert isinstance(reg.backend("na", allow_unavailable=True), abi.Backend)
    with pytest.raises(TritonError):  # a failed (incompatible) backend never loads
        reg.backend("old", allow_unavailable=True)


def test_abi_rule():
    assert abi.abi_compatible((abi.ABI_VERSION[0], 0))
    assert not abi.abi_compatible((abi.ABI_VERSION[0] + 1, 0))
    assert not abi.abi_compatible((abi.ABI_VERSION[0], abi.ABI_VERSION[1] + 1))


def test_autoload_env(monkeypatch):
    monkeypatch.setenv("TRITON_CORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    reg = BackendRegistry()
    reg.discover()
    assert reg.entries == []


def test_triton_check_names_the_reason_when_an_unavailable_backend_cannot_read(tmp_path, monkeypatch):
    from triton_core import checker

    def broken_factory(ctx):
        raise ModuleNotFoundError("No module named 'somert'")

    class Registry(BackendRegistry):
        def discover(self) -> None:
            self.register_plugin(_module(abi.BackendSpec(
                name="na", factory=broken_factory, available=lambda: "somert cannot be imported")), "na")

    monkeypatch.setattr(checker, "BackendRegistry", Registry)
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "config.pbtxt").write_text('backend: "na"\n')
    errors, lines = checker.check_repository([tmp_path])
    assert errors == 1
    assert ("FAIL m: ModuleNotFoundError: No module named 'somert' (backend 'na' is unavailable: "
            "somert cannot be imported)") in lines
