"""What ``CKite.apply`` returns: a write's result together with where in the log it took effect."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The outcome of one applied write.

    ``index`` and ``term`` name the log entry at which the command was applied *the first time*:
    a retry answered from the client table (a session's retry, a write under a reused
    idempotency key) reports the original entry, not the retry's. Every member applies the log
    in the same order, so ``index`` is a position the caller can compare with
    ``status().applied_index`` of any member (read-your-writes on a follower: wait until it has
    applied ``index``), or hand to another process as a causal token.
    """

    result: Any     #: what the state machine's ``apply`` returned
    index: int      #: the log index of the entry the command was applied at
    term: int       #: the term of that entry
