"""The client shared-memory API cannot reach the python backend's own arenas."""

import pytest
from python_backend_helpers import build_repo, make_server

from triton_backend_python import arenas
from triton_core.errors import ErrorCode, TritonError
from triton_core.memory import shm


def test_a_live_arena_is_refused_whatever_its_name(tmp_path, monkeypatch):
    """During a model load the arenas still have names in /dev/shm (until the worker maps
    them); a client registering one would read other clients' inputs. Keep the names past the
    load (no unlink), then register each: refused by identity, not by a prefix."""
    monkeypatch.setattr(arenas.ArenaPair, "unlink", lambda self, name: None)
    server = make_server(build_repo(tmp_path, ["add_sub"]), allow_client_shm=True)
    with server:
        worker = server.manager.get("add_sub").instances[0].worker
        names = list(worker.arenas.regions)
        assert names and all(len(n) >= 4 + 16 for n in names)  # 64 random bits in each
        try:
            for i, name in enumerate(names):
                with pytest.raises(TritonError, match="server's own shared memory") as info:
                    server.shm_registry.register(f"steal{i}", name, 0, 64)
                assert info.value.code is ErrorCode.INVALID_ARG
            assert server.shm_registry.status() == []
        finally:
            for name in names:
                try:
                    shm.unlink(name, os_rules=False)
                except OSError:
                    pass
