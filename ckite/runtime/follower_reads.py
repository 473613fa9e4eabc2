"""Linearizable reads on a follower: one read index from the leader for every read waiting here.

A follower's own state may be stale, so a linearizable read on it asks the leader for a *read
index*: the leader confirms it still leads (its ReadIndex round, or its lease) and answers with
its commit index; the follower waits until it has applied that index and reads its own state
machine (thesis §6.4, "reads from followers"). The answer reflects every write acknowledged
before the read began, and the reads spread over every member instead of all landing on the
leader.

Reads that arrive together share one request: while a request is in flight, newcomers gather in
the next *round*, sent by one of them as soon as the request in flight has its answer. A read
never joins a round already sent, whose read index might predate it. No thread of its own: the
first reader of a round sends it.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

from ckite.errors import ReadTimeoutError


class _Round:
    __slots__ = ("index", "error", "done")

    def __init__(self) -> None:
        self.index = 0
        self.error: BaseException | None = None
        self.done = False


class ReadIndexRounds:
    """``fetch(timeout)`` asks the leader for a read index (raising what the leader or the network
    raised); :meth:`read_index` gives a reader one that was fetched after it arrived."""

    def __init__(self, fetch: Callable[[float], int], clock: Callable[[], float]) -> None:
        self._fetch = fetch
        self._clock = clock
        self._changed = threading.Condition()
        self._open: _Round | None = None   # gathering readers, not yet sent
        self._in_flight = False

    def read_index(self, deadline: float) -> int:
        """A read index for a read that arrived now; raises ReadTimeoutError past ``deadline``, or
        the error the round's request failed with (the caller may retry: a read changes nothing)."""
        with self._changed:
            mine = self._open = self._open or _Round()
            while not mine.done:
                if not self._in_flight and self._open is mine:
                    self._open, self._in_flight = None, True
                    break   # this thread sends the round
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise ReadTimeoutError("no read index from the leader within the timeout")
                self._changed.wait(remaining)
            else:
                return self._outcome(mine)
        try:
            mine.index = self._fetch(max(deadline - self._clock(), 0))
        except BaseException as exc:
            mine.error = exc
        with self._changed:
            mine.done, self._in_flight = True, False
            self._changed.notify_all()
        return self._outcome(mine)

    @staticmethod
    def _outcome(round_: _Round) -> int:
        if round_.error is not None:
            raise round_.error
        return round_.index
