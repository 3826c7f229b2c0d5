"""Triton's rate limiter (``--rate-limit=execution_count``): an instance executes only
while the resources its instance group lists are free; priorities weight which waiting
instance goes next.

Resources (``instance_group { rate_limiter { resources [{ name count global }] priority }}``)
are counted per device (the instance's device id) unless ``global``. What is available
is ``--rate-limit-resource=<name>:<count>[:<device>]`` where given, else the largest
count any loaded instance asks for (so every instance can run). An instance's executions
are granted in order of a virtual time that grows by its priority at each grant (1 is
the highest; priority 2 gets half the chances of priority 1); a waiter whose resources
are taken keeps them from those behind it, so none starves.

The drivers ask before each execute (scheduling/driver.py): a thread driver waits, a
loop driver gets called back when its turn comes.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..errors import TritonError

RATE_LIMIT_MODES = ("off", "execution_count")


@dataclass(frozen=True)
class ResourceNeed:
    name: str
    count: int
    is_global: bool = False


def parse_resource_flag(value: str) -> tuple[str, int, int | None]:
    """``--rate-limit-resource=<name>:<count>[:<device>]`` as (name, count, device or None)."""
    parts = value.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise TritonError.invalid_arg(
            f"--rate-limit-resource '{value}': expected <name>:<count>[:<device>]")
    try:
        count = int(parts[1])
        device = int(parts[2]) if len(parts) == 3 else None
    except ValueError:
        raise TritonError.invalid_arg(
            f"--rate-limit-resource '{value}': count and device must be integers") from None
    if count < 0 or (device is not None and device < 0):
        raise TritonError.invalid_arg(
            f"--rate-limit-resource '{value}': count and device must not be negative")
    return parts[0], count, device


@dataclass(eq=False)
class LimitedInstance:
    """One instance's place at the rate limiter."""

    name: str
    device: int
    needs: tuple[ResourceNeed, ...]
    priority: int
    vtime: int = 0
    # (resource key, count) held while an execution of this instance runs
    held: list[tuple[tuple[str, int | None], int]] = field(default_factory=list)


class _Waiter:
    __slots__ = ("inst", "vtime", "seq", "granted", "on_grant")

    def __init__(self, inst: LimitedInstance, vtime: int, seq: int,
                 on_grant: Callable[[], None] | None) -> None:
        self.inst = inst
        self.vtime = vtime
        self.seq = seq
        self.granted = False
        self.on_grant = on_grant


class RateLimiter:
    """The server's rate limiter; one per Server, shared by every model."""

    def __init__(self, mode: str = "off", resources: Iterable[str] = ()) -> None:
        if mode not in RATE_LIMIT_MODES:
            raise TritonError.invalid_arg(
                f"invalid --rate-limit '{mode}': expected one of {', '.join(RATE_LIMIT_MODES)}")
        self.enabled = mode == "execution_count"
        # (name, device or None for every device) -> count, as given on the command line
        self._explicit: dict[tuple[str, int | None], int] = {}
        for r in resources:
            name, count, device = parse_resource_flag(r)
            self._explicit[(name, device)] = count
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._instances: list[LimitedInstance] = []
        self._in_use: dict[tuple[str, int | None], int] = {}
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()
        self._clock = 0  # the virtual time of the last grant

    # registration --------------------------------------------------------------------
    def register(self, name: str, device: int, needs: Iterable[ResourceNeed],
                 priority: int) -> LimitedInstance | None:
        """An instance joins (at load); None when the limiter is off. Raises TritonError
        when a resource given on the command line is too small for it."""
        if not self.enabled:
            return None
        inst = LimitedInstance(name, device, tuple(needs), max(1, priority))
        for need in inst.needs:
            key = self._key(need, device)
            have = self._explicit_count(key)
            if have is not None and have < need.count:
                raise TritonError.invalid_arg(
                    f"Resource count for \"{need.name}\" is limited to {have} which will prevent "
                    f"scheduling of one or more model instances, the minimum required count is "
                    f"{need.count}")
        with self._lock:
            inst.vtime = self._clock
            self._instances.append(inst)
        return inst

    def unregister(self, inst: LimitedInstance | None) -> None:
        if inst is None:
            return
        with self._lock:
            if inst in self._instances:
                self._instances.remove(inst)
            self._dispatch()

    # executions ----------------------------------------------------------------------
    def acquire(self, inst: LimitedInstance,
                on_grant: Callable[[], None] | None = None) -> bool:
        """Take ``inst``'s resources for one execution. Without ``on_grant``: wait for them
        (True). With it: True when taken now, else False and ``on_grant`` is called (on
        the releasing thread) once they are taken for this caller."""
        granted: list[_Waiter] = []
        with self._lock:
            w = _Waiter(inst, max(inst.vtime, self._clock), next(self._seq), on_grant)
            self._waiters.append(w)
            granted = self._dispatch()
            if w.granted:
                granted.remove(w)
            elif on_grant is None:
                while not w.granted:
                    self._cond.wait()
                if w in granted:
                    granted.remove(w)
        self._call(granted)
        return w.granted

    def release(self, inst: LimitedInstance) -> None:
        """The execution ended: its resources go to the next waiters."""
        with self._lock:
            for key, n in inst.held:
                self._in_use[key] -= n
            inst.held.clear()
            granted = self._dispatch()
        self._call(granted)

    def cancel(self, inst: LimitedInstance) -> None:
        """``inst`` no longer waits (its driver stops)."""
        with self._lock:
            self._waiters = [w for w in self._waiters if w.inst is not inst]
            granted = self._dispatch()
        self._call(granted)

    # internals (under the lock) --------------------------------------------------------
    @staticmethod
    def _key(need: ResourceNeed, device: int) -> tuple[str, int | None]:
        return (need.name, None if need.is_global else device)

    def _explicit_count(self, key: tuple[str, int | None]) -> int | None:
        name, device = key
        if key in self._explicit:
            return self._explicit[key]
        if device is not None and (name, None) in self._explicit:
            return self._explicit[(name, None)]
        return None

    def _available(self, key: tuple[str, int | None]) -> int:
        given = self._explicit_count(key)
        if given is not None:
            return given
        most = 0
        for inst in self._instances:
            for need in inst.needs:
                if self._key(need, inst.device) == key:
                    most = max(most, need.count)
        return most

    def _fits(self, inst: LimitedInstance) -> bool:
        for need in inst.needs:
            key = self._key(need, inst.device)
            if self._in_use.get(key, 0) + need.count > self._available(key):
                return False
        return True

    def _dispatch(self) -> list[_Waiter]:
        """Grant waiters in order where their resources are free; a waiter that does not fit
        keeps the resources it needs from those behind it (none starves). Returns those
        granted."""
        granted: list[_Waiter] = []
        reserved: set[tuple[str, int | None]] = set()
        self._waiters.sort(key=lambda w: (w.vtime, w.seq))
        waiting: list[_Waiter] = []
        for w in self._waiters:
            inst = w.inst
            keys = [self._key(need, inst.device) for need in inst.needs]
            if reserved.intersection(keys) or not self._fits(inst):
                reserved.update(keys)
                waiting.append(w)
                continue
            for need, key in zip(inst.needs, keys, strict=True):
                self._in_use[key] = self._in_use.get(key, 0) + need.count
                inst.held.append((key, need.count))
            self._clock = max(self._clock, w.vtime)
            inst.vtime = w.vtime + inst.priority
            w.granted = True
            granted.append(w)
        self._waiters = waiting
        if granted:
            self._cond.notify_all()
        return granted

    @staticmethod
    def _call(granted: list[_Waiter]) -> None:
        for w in granted:
            if w.on_grant is not None:
                w.on_grant()


def needs_of(config: dict | None, where: str) -> tuple[tuple[ResourceNeed, ...], int]:
    """(resources, priority) of an instance group's ``rate_limiter`` (empty, 1 without one)."""
    if not config:
        return (), 1
    if not isinstance(config, dict):
        raise TritonError.invalid_arg(f"{where}: rate_limiter must be a message")
    needs: list[ResourceNeed] = []
    for r in config.get("resources") or []:
        if not isinstance(r, dict) or not r.get("name"):
            raise TritonError.invalid_arg(f"{where}: rate_limiter resources need a name")
        try:
            count = int(r.get("count", 0))
        except (TypeError, ValueError):
            raise TritonError.invalid_arg(
                f"{where}: rate_limiter resource '{r['name']}': count must be an integer") from None
        if count < 0:
            raise TritonError.invalid_arg(
                f"{where}: rate_limiter resource '{r['name']}': count must not be negative")
        is_global = r.get("global", False)
        if isinstance(is_global, str):
            is_global = is_global.lower() == "true"
        needs.append(ResourceNeed(str(r["name"]), count, bool(is_global)))
    try:
        priority = int(config.get("priority", 0) or 0)
    except (TypeError, ValueError):
        raise TritonError.invalid_arg(f"{where}: rate_limiter priority must be an integer") from None
    if priority < 0:
        raise TritonError.invalid_arg(f"{where}: rate_limiter priority must not be negative")
    return tuple(needs), max(1, priority)
