"""Exceptions raised by the public API.

Every blocking call of :class:`ckite.CKite` either returns or raises one of these
within its timeout. A failed *write* is always one of two kinds, and says which:

- :class:`NotAppliedError`: the write certainly did not apply, and never will (it was
  refused before it reached the log, or another entry took its place). Retrying it in any
  way is safe.
- :class:`OutcomeUnknownError`: it may have applied, or may still apply (a timeout, a lost
  leader, a reply that never came). Retry it only through the same session
  (:meth:`ckite.CKite.session`): a session's retry never applies twice.

A :class:`CommandError` is neither: the command was applied and the state machine raised.
``error.outcome`` says the same as a string (``"not-applied"``, ``"unknown"``, or None for
an error that is not about a write's outcome).
"""
from __future__ import annotations


class CKiteError(Exception):
    """Base class of every error ckite raises on purpose."""

    #: For a failed write: "not-applied" or "unknown" (see the module's doc); None otherwise.
    outcome: str | None = None


class NotAppliedError(CKiteError):
    """The write certainly did not apply and never will: safe to retry, in any way."""

    outcome = "not-applied"


class OutcomeUnknownError(CKiteError):
    """The write may have applied, or may still apply: retry it only through the same session,
    whose retries never apply twice."""

    outcome = "unknown"


class NotLeaderError(NotAppliedError):
    """This member is not the leader and could not forward the request.

    ``leader`` is the binding of the member believed to lead, when known, so a
    client can retry there.
    """

    def __init__(self, message: str = "not the leader", leader: str | None = None) -> None:
        super().__init__(message if leader is None else f"{message} (leader: {leader})")
        self.leader = leader


class LeaderTimeoutError(NotAppliedError, TimeoutError):
    """No leader was known within the timeout (no quorum, or an election is still running)."""


class WriteTimeoutError(OutcomeUnknownError, TimeoutError):
    """A write was not applied within its timeout. The outcome is unknown: the entry may still
    commit later; retry it through the same session (``CKite.write``'s own retries do)."""


class ReadTimeoutError(CKiteError, TimeoutError):
    """A linearizable read could not confirm leadership and catch up within its timeout."""


class LostLeadershipError(OutcomeUnknownError):
    """The leader that accepted the request lost leadership before it completed: a write's
    outcome is unknown (another leader may still commit its entry)."""


class EntryOverwrittenError(NotAppliedError):
    """Another entry was committed at the write's index: it certainly did not apply."""


class WriteInterruptedError(OutcomeUnknownError):
    """The member stopped, or its disk failed, while the write was in flight (it may have been
    replicated already): its outcome is unknown."""


class SessionExpiredError(NotAppliedError):
    """The client session is unknown to the cluster: it expired (no request for the session
    timeout, in the log's time), so its request was refused, not applied. Open a new session;
    a request sent earlier through the expired one may have applied."""


class IdempotencyKeyReusedError(NotAppliedError):
    """An idempotency key already used for another request (another command, or other
    arguments): refused, nothing applied."""


class CommandError(CKiteError):
    """The state machine raised while applying a command; the entry stays committed.

    ``error_type`` names the original exception class (also across a forwarded call).
    """

    def __init__(self, message: str, error_type: str = "Exception") -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type


class UnknownCommandError(NotAppliedError):
    """A command type is not registered, so it can be neither encoded nor decoded."""


class EncodingError(NotAppliedError):
    """A command, result or message could not be encoded or decoded safely."""


class MembershipChangeError(CKiteError):
    """A membership change failed or is impossible (the last voter, a member that did not catch
    up, no commit within the timeout)."""


class MembershipChangeInProgressError(MembershipChangeError):
    """Another membership change is running; ``add_member``/``remove_member`` wait and retry."""


class SnapshotTimeoutError(CKiteError, TimeoutError):
    """``snapshot_now`` did not see its snapshot stored within the timeout; it goes on (the
    compactor writes it), and the next ``status()`` shows it once stored."""


class StorageError(CKiteError):
    """The durable store failed (disk full, read-only, corrupt file): the member stops serving."""


class MemberFailedError(StorageError, NotAppliedError):
    """The member is out of service (its storage failed): it refused the request."""


class StoppedError(NotAppliedError):
    """The member is not started, or has been stopped."""


class RpcError(CKiteError):
    """A call to another member failed (timeout, broken connection, malformed reply).

    The request may or may not have been processed by the remote member.
    """


class UnreachableError(RpcError, NotAppliedError):
    """The member could not be reached at all (connection refused or timed out while
    connecting): the request was certainly not delivered, so it is safe to retry."""


class ProtocolError(RpcError):
    """A peer sent something Raft forbids (e.g. entries replacing committed ones): refused,
    nothing changed. Only a buggy or hostile member does this."""
