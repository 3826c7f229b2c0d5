"""The rate limiter (--rate-limit=execution_count): executions whose resources conflict
never overlap, across models and drivers; priorities weight the turns; Triton's words."""

import concurrent.futures
import subprocess
import sys
import threading

import numpy as np
import pytest

from expr_backend import ADD_SUB, make_server, write_model
from triton_core import ErrorCode, TritonError
from triton_core.scheduling.rate_limiter import RateLimiter, ResourceNeed, needs_of

A = np.arange(16, dtype=np.int32).reshape(1, 16)


def limited(resources: str, priority: int = 1, count: int = 1, extra: str = "") -> str:
    return ADD_SUB + extra + (
        f'instance_group [{{ count: {count} kind: KIND_CPU rate_limiter {{ '
        f'resources [{resources}] priority: {priority} }} }}]\n'
        'parameters { key: "sleep_ms" value { string_value: "5" } }\n')


class Overlap:
    """Counts executions running at once over several instances."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.most = 0
        self.runs = 0

    def wrap(self, inst) -> None:
        orig = inst.execute

        def execute(requests, timer):
            with self.lock:
                self.active += 1
                self.most = max(self.most, self.active)
                self.runs += 1
            try:
                return orig(requests, timer)
            finally:
                with self.lock:
                    self.active -= 1

        inst.execute = execute


def _hammer(s, models: list[str], per_model: int = 12) -> None:
    def one(args):
        model, i = args
        b = np.full((1, 16), i % 50, np.int32)
        np.testing.assert_array_equal(s.model(model).infer({"INPUT0": A, "INPUT1": b})["OUTPUT0"],
                                      A + b)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, [(m, i) for m in models for i in range(per_model)]))


def test_conflicting_instances_never_execute_at_once(tmp_path):
    """Two models (one on a thread driver, one on the loop driver), each with two instances,
    all needing the one copy of R: one execution at a time, all answered."""
    write_model(tmp_path, "local", limited('{ name: "R" count: 1 }', count=2))
    write_model(tmp_path, "remote", limited(
        '{ name: "R" count: 1 }', count=2,
        extra='parameters { key: "remote" value { string_value: "1" } }\n'))
    with make_server(tmp_path, rate_limit="execution_count") as s:
        watch = Overlap()
        for name in ("local", "remote"):
            for inst in s.manager.get(name).instances:
                watch.wrap(inst)
        _hammer(s, ["local", "remote"])
        assert watch.runs == 24 and watch.most == 1


def test_resources_beyond_the_need_let_instances_run_together(tmp_path):
    """R has 2 copies (--rate-limit-resource): two instances needing one each may run
    together, never three."""
    write_model(tmp_path, "m", limited('{ name: "R" count: 1 }', count=3))
    with make_server(tmp_path, rate_limit="execution_count", rate_limit_resource=["R:2"]) as s:
        watch = Overlap()
        for inst in s.manager.get("m").instances:
            watch.wrap(inst)
        _hammer(s, ["m"], 24)
        assert watch.runs == 24 and watch.most <= 2


def test_global_resources_are_shared_across_devices():
    limiter = RateLimiter("execution_count")
    a = limiter.register("a", 0, [ResourceNeed("G", 1, is_global=True)], 1)
    b = limiter.register("b", 1, [ResourceNeed("G", 1, is_global=True)], 1)
    c = limiter.register("c", 1, [ResourceNeed("D", 1)], 1)
    d = limiter.register("d", 0, [ResourceNeed("D", 1)], 1)
    assert a and b and c and d
    assert limiter.acquire(a) and not limiter.acquire(b, on_grant=lambda: None)
    assert limiter.acquire(c) and limiter.acquire(d)  # per device: one copy on each
    limiter.release(a)  # b's turn
    assert b.held and not a.held


def test_priority_weights_the_turns():
    """Two instances of priority 1 and two of priority 2 contend for one copy of R, each
    asking again as soon as its execution ends: priority 2 gets half the turns."""
    limiter = RateLimiter("execution_count")
    insts = [limiter.register(f"p{p}_{i}", 0, [ResourceNeed("R", 1)], p)
             for p in (1, 2) for i in range(2)]
    turns: list[int] = []
    running: list = []

    def ask(inst) -> None:
        def granted() -> None:
            turns.append(inst.priority)
            running.append(inst)
        if limiter.acquire(inst, on_grant=granted):
            granted()

    for inst in insts:
        ask(inst)
    for _ in range(60):
        current = running.pop(0)
        limiter.release(current)  # the next in line is granted (and appended to running)
        ask(current)
    assert len(running) == 1
    ones, twos = turns.count(1), turns.count(2)
    assert abs(ones - 2 * twos) <= 3, turns


def test_too_few_resources_fail_the_load_in_tritons_words(tmp_path):
    write_model(tmp_path, "m", limited('{ name: "resource1" count: 4 }'))
    s = make_server(tmp_path, rate_limit="execution_count", rate_limit_resource=["resource1:1"],
                    exit_on_error=False)
    with s:
        assert not s.model_ready("m")
        assert ('Resource count for "resource1" is limited to 1 which will prevent scheduling of '
                'one or more model instances, the minimum required count is 4') in s.load_errors["m"]


def test_off_ignores_the_config(tmp_path):
    write_model(tmp_path, "m", limited('{ name: "R" count: 1 }', count=2))
    with make_server(tmp_path) as s:
        assert s.rate_limiter is None and not s.manager.get("m").limits
        _hammer(s, ["m"], 4)


@pytest.mark.parametrize("config, words", [
    ({"resources": [{"count": 1}]}, "need a name"),
    ({"resources": [{"name": "R", "count": -1}]}, "must not be negative"),
    ({"resources": [{"name": "R", "count": "x"}]}, "must be an integer"),
    ({"priority": -2}, "priority must not be negative"),
])
def test_bad_rate_limiter_configs_are_refused(config, words):
    with pytest.raises(TritonError) as e:
        needs_of(config, "model 'm'")
    assert e.value.code is ErrorCode.INVALID_ARG and words in e.value.message


def test_needs_of_reads_the_config():
    needs, priority = needs_of({"resources": [{"name": "R", "count": 2},
                                              {"name": "G", "global": True, "count": 1}],
                                "priority": 3}, "m")
    assert needs == (ResourceNeed("R", 2), ResourceNeed("G", 1, True)) and priority == 3
    assert needs_of(None, "m") == ((), 1)


@pytest.mark.parametrize("flag", ["R", "R:x", ":1", "R:1:2:3", "R:-1"])
def test_bad_resource_flags_stop_the_start(flag, tmp_path):
    r = subprocess.run([sys.executable, "-m", "triton_core.cli", "--model-repository", str(tmp_path),
                        f"--rate-limit-resource={flag}"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--rate-limit-resource" in r.stderr, r.stderr
