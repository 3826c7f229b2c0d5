import types

import pytest

from triton_core import abi
from triton_core.errors import TritonError
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
    na = by[("na", "na")]
    assert na.status == "available" and na.check is not None  # not checked until needed
    assert na.resolve().status == "unavailable" and na.reason == "needs macOS"
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


class _EntryPoint:
    """What importlib.metadata gives the registry: a name, a distribution, load()."""

    def __init__(self, name, module=None, error=None):
        self.name, self.module, self.error = name, module, error
        self.dist = types.SimpleNamespace(name=f"triton-backend-{name}", version="1.0")

    def load(self):
        if self.error:
            raise self.error
        return self.module


def _discover(monkeypatch, only, points):
    import triton_core.models.registry as registry

    monkeypatch.delenv("TRITON_CORE_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.setenv("TRITON_CORE_PLUGINS", only)
    monkeypatch.setattr(registry.md, "entry_points", lambda group: points)
    reg = BackendRegistry()
    reg.discover()
    return reg


def _points():
    return [_EntryPoint("onnx", _module(abi.BackendSpec(name="onnxruntime", factory=_factory))),
            _EntryPoint("py", _module(abi.BackendSpec(name="python", factory=_factory))),
            _EntryPoint("broken", error=ImportError("No module named 'libfoo'"))]


def test_triton_core_plugins_takes_entry_point_and_backend_names(monkeypatch):
    assert [e.name for e in _discover(monkeypatch, "onnx", _points()).entries] == ["onnxruntime"]
    reg = _discover(monkeypatch, "python", _points())
    assert [e.name for e in reg.entries if e.status != "failed"] == ["python"]
    assert reg.pm.get_plugin("onnx") is None  # imported to read its backend names, not registered


def test_triton_core_plugins_names_what_exists_when_a_name_is_wrong(monkeypatch, caplog):
    with caplog.at_level("WARNING", logger="triton_core"):
        reg = _discover(monkeypatch, "onnxrt", _points())
    assert reg.unknown_plugin_names == ["onnxrt"]
    assert "'onnxrt', neither a plugin (entry points: broken, onnx, py) nor a backend " \
           "(onnxruntime, python); plugin 'broken' (triton-backend-broken) failed to import" in caplog.text


def test_a_plugin_that_failed_to_import_is_named_where_its_backend_is_missing(monkeypatch):
    reg = _discover(monkeypatch, "", _points())
    with pytest.raises(TritonError) as e:
        reg.backend("coreml")
    assert "unable to find backend 'coreml' (installed backends: onnxruntime, python)" in e.value.message
    assert "plugin 'broken' (triton-backend-broken) failed to import: ImportError: No module named " \
           "'libfoo'" in e.value.message


def test_a_refused_backend_says_why_it_is_missing():
    reg = BackendRegistry()
    reg.register_plugin(_module(abi.BackendSpec(name="old", factory=_factory, abi=(0, 9))), "old")
    with pytest.raises(TritonError) as e:
        reg.backend("old")
    assert "backend 'old' failed to register: incompatible ABI 0.9" in e.value.message


def test_the_availability_check_runs_only_when_the_backend_is_needed():
    """A server whose models do not use a backend never runs its check (which may import a
    framework); `triton backends`, `triton check` and the first load run it."""
    calls: list[int] = []
    reg = BackendRegistry()
    reg.register_plugin(_module(abi.BackendSpec(
        name="lazy", factory=_factory, available=lambda: calls.append(1) or None)), "lazy")
    assert calls == []
    reg.backend("lazy")
    reg.backend("lazy")
    assert calls == [1]
    assert reg.entry("lazy").as_dict()["status"] == "available" and calls == [1]
