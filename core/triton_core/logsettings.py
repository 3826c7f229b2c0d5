"""Triton-style logging on stderr and the logging extension's settings."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .errors import TritonError

LOGGER = logging.getLogger("triton_core")
VERBOSE = 5  # logging level for --log-verbose messages


class TritonFormatter(logging.Formatter):
    """`I1126 01:39:26.123456 1234 file.py:42] message`, or ISO8601 timestamps."""

    def __init__(self, iso8601: bool = False) -> None:
        super().__init__()
        self.iso8601 = iso8601

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno >= logging.ERROR:
            letter = "E"
        elif record.levelno >= logging.WARNING:
            letter = "W"
        elif record.levelno >= logging.INFO:
            letter = "I"
        else:
            letter = "V"
        t = record.created
        us = int((t % 1) * 1e6)
        if self.iso8601:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
            head = f"{stamp} {letter} {os.getpid()} {record.filename}:{record.lineno}]"
        else:
            stamp = time.strftime("%m%d %H:%M:%S", time.localtime(t)) + f".{us:06d}"
            head = f"{letter}{stamp} {os.getpid()} {record.filename}:{record.lineno}]"
        msg = record.getMessage()
        if record.exc_info:
            msg += "\n" + self.formatException(record.exc_info)
        return f"{head} {msg}"


class _LevelFilter(logging.Filter):
    def __init__(self, settings: LogSettings) -> None:
        super().__init__()
        self.s = settings

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return self.s.log_error
        if record.levelno >= logging.WARNING:
            return self.s.log_warning
        if record.levelno >= logging.INFO:
            return self.s.log_info
        return self.s.log_verbose_level > 0


class _NotOurs(logging.Filter):
    """On the root handler: records of other loggers only (ours do not propagate)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(LOGGER.name + ".") and record.name != LOGGER.name


class LogSettings:
    """State behind /v2/logging; the log file is chosen at start-up only."""

    def __init__(self) -> None:
        self.log_file = ""
        self.log_info = True
        self.log_warning = True
        self.log_error = True
        self.log_verbose_level = 0
        self.log_format = "default"
        self._handler: logging.Handler | None = None
        self._root_handler: logging.Handler | None = None
        self._lock = threading.Lock()
        # --frontend-processes N > 1: passes an update on to the other processes (peers.py)
        self.on_update: Callable[[dict[str, Any]], None] | None = None

    def install(self, log_file: str = "") -> None:
        """Attach the Triton-style handler to the triton_core logger (once), and to the root
        logger for what plugins and libraries log under their own names (a backend's
        `logging.getLogger(__name__)`), so that every line of the server's log has the prefix."""
        with self._lock:
            if self._handler is not None:
                LOGGER.removeHandler(self._handler)
            if self._root_handler is not None:
                logging.getLogger().removeHandler(self._root_handler)
            self.log_file = log_file
            handler: logging.StreamHandler = (
                logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
            )
            handler.addFilter(_LevelFilter(self))
            handler.setFormatter(TritonFormatter(self.log_format == "ISO8601"))
            LOGGER.addHandler(handler)
            LOGGER.propagate = False
            self._handler = handler
            # the same stream; other loggers keep their own levels (the root's is WARNING)
            root_handler = logging.StreamHandler(handler.stream)
            root_handler.addFilter(_LevelFilter(self))
            root_handler.addFilter(_NotOurs())
            logging.getLogger().addHandler(root_handler)
            self._root_handler = root_handler
            self._apply()

    def _apply(self) -> None:
        LOGGER.setLevel(VERBOSE if self.log_verbose_level > 0 else logging.INFO)
        for h in (self._handler, self._root_handler):
            if h is not None:
                h.setFormatter(TritonFormatter(self.log_format == "ISO8601"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "log_file": self.log_file,
            "log_info": self.log_info,
            "log_warning": self.log_warning,
            "log_error": self.log_error,
            "log_verbose_level": self.log_verbose_level,
            "log_format": self.log_format,
        }

    def update(self, changes: dict[str, Any], *, everywhere: bool = True) -> dict[str, Any]:
        """Apply a /v2/logging update; every value is checked before any is applied.
        ``everywhere``: also in the other front-end processes (``on_update``, peers.py)."""
        new = self.as_dict()
        for key, value in changes.items():
            if key == "log_file":
                if value not in (None, "", self.log_file):
                    raise TritonError.unsupported(
                        "log_file cannot be changed through the logging API; "
                        "use --log-file at start-up")
                continue
            if key in ("log_info", "log_warning", "log_error"):
                if not isinstance(value, bool):
                    raise TritonError.invalid_arg(f"expect boolean for '{key}'")
            elif key == "log_verbose_level":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise TritonError.invalid_arg("expect non-negative integer for 'log_verbose_level'")
            elif key == "log_format":
                if value not in ("default", "ISO8601"):
                    raise TritonError.invalid_arg(
                        f"invalid argument for 'log_format': '{value}' (use 'default' or 'ISO8601')")
            else:
                raise TritonError.invalid_arg(f"unknown logging setting '{key}'")
            new[key] = value
        with self._lock:
            for k, v in new.items():
                if k != "log_file":
                    setattr(self, k, v)
            self._apply()
        if everywhere and self.on_update is not None:
            self.on_update(changes)
        return self.as_dict()


def verbose(msg: str, *args: object) -> None:
    LOGGER.log(VERBOSE, msg, *args)
