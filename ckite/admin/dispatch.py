"""The admin server's threads: routes that only look never queue behind routes that wait.

waitress hands each parsed request to one pool of worker threads. The key-value routes, reads,
membership changes and leadership transfers may wait seconds for consensus (a write with no
quorum waits for its timeout), so a handful of waiting clients would occupy every worker and
leave ``/status``, ``/metrics`` and the console unanswered exactly when an operator needs them.
Here each request goes to the pool of its kind:

- *look*: ``/status``, ``/metrics``, the console's page and files: answered from memory;
- *peers*: ``/cluster/status``, which asks every member with a short timeout;
- *work*: everything else (the routes that wait on consensus, the application's routes).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from waitress.task import ThreadedTaskDispatcher

#: Paths answered by the *look* pool (and every path under /static/).
LOOK_PATHS = frozenset({"/", "/status", "/metrics", "/console/config", "/favicon.ico"})
PEERS_PATHS = frozenset({"/cluster/status"})

LOOK_THREADS = 2
PEERS_THREADS = 2


def pool_of(path: str) -> str:
    """Which pool serves ``path``: "look", "peers" or "work"."""
    if path in LOOK_PATHS or path.startswith("/static/"):
        return "look"
    return "peers" if path in PEERS_PATHS else "work"


class _NamedPool(ThreadedTaskDispatcher):  # type: ignore[misc]   # waitress has no type information
    """waitress's pool, with threads named after the member and the pool (``ckite-9091-http-look-0``)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self._name = name

    def start_new_thread(self, target: Callable[[int], None], thread_no: int) -> None:
        threading.Thread(target=target, name=f"{self._name}-{thread_no}", args=(thread_no,), daemon=True).start()


class RoutingDispatcher:
    """A waitress task dispatcher (``add_task``/``set_thread_count``/``shutdown``) over three pools."""

    def __init__(self, tag: str, work_threads: int, classify: Callable[[str], str] = pool_of) -> None:
        self._classify = classify
        self._pools = {kind: _NamedPool(f"ckite-{tag}-http-{kind}") for kind in ("look", "peers", "work")}
        self._pools["look"].set_thread_count(LOOK_THREADS)
        self._pools["peers"].set_thread_count(PEERS_THREADS)
        self._pools["work"].set_thread_count(work_threads)

    def add_task(self, task: Any) -> None:
        """``task`` is a channel with its next request parsed (or an error to answer)."""
        requests = getattr(task, "requests", None)
        path = requests[0].path if requests else ""
        self._pools[self._classify(path or "")].add_task(task)

    def set_thread_count(self, count: int) -> None:
        self._pools["work"].set_thread_count(count)

    def shutdown(self, cancel_pending: bool = True, timeout: float = 5) -> bool:
        """Stop every pool; the requests of all of them get ``timeout`` to finish, together."""
        for pool in self._pools.values():
            pool.set_thread_count(0)
        return all([pool.shutdown(cancel_pending, timeout) for pool in self._pools.values()])
