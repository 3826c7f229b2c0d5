"""Model records are read without locks on every request while loads change them: readers
must never see a mapping change under them (copy-on-write), whatever the thread timing."""

from __future__ import annotations

import shutil
import sys
import threading

from expr_backend import ADD_SUB, make_server, write_model
from triton_core.frontends.metrics import Metrics
from triton_core.models.manager import VersionState


def test_readers_never_see_versions_change_under_them(tmp_path):
    write_model(tmp_path, "add", ADD_SUB + "version_policy { all { } }", versions=(1, 2))
    errors: list[BaseException] = []
    done = threading.Event()
    old = sys.getswitchinterval()
    with make_server(tmp_path, model_control_mode="explicit") as s:
        s.load_model("add")
        metrics = Metrics(s, cpu_metrics=False)

        def read() -> None:
            while not done.is_set():
                try:
                    s.statistics()
                    s.statistics("add")
                    s.model_metadata("add")
                    s.manager.get("add")
                    s.repository_index()
                    metrics.render()
                except Exception as e:  # noqa: BLE001 - a TritonError "not ready" is fine
                    if type(e).__name__ != "TritonError":
                        errors.append(e)
                        return

        readers = [threading.Thread(target=read) for _ in range(2)]
        sys.setswitchinterval(1e-6)  # switch threads as often as possible
        try:
            for t in readers:
                t.start()
            for i in range(12):  # versions come and go: 3 appears, then goes
                if i % 2 == 0:
                    write_model(tmp_path, "add", ADD_SUB + "version_policy { all { } }",
                                versions=(3,))
                else:
                    shutil.rmtree(tmp_path / "add" / "3")
                s.load_model("add")
        finally:
            sys.setswitchinterval(old)
            done.set()
            for t in readers:
                t.join(30)
    assert not errors, errors


def test_a_version_state_is_replaced_never_changed():
    st = VersionState("READY")
    try:
        st.state = "UNLOADING"  # type: ignore[misc]
    except AttributeError:
        return
    raise AssertionError("VersionState must be immutable")
