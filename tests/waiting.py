"""Waiting on a condition with a deadline: the tests' replacement for sleep()."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 10.0, message: str = "condition",
             interval: float = 0.01) -> T:
    """Poll ``condition`` until it returns a truthy value, which is returned; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)
