"""Exceptions raised by the public API.

Every blocking call of :class:`ckite.CKite` either returns or raises one of these
within its timeout: callers can tell "try another member" (:class:`NotLeaderError`,
:class:`LeaderTimeoutError`) from "the outcome is unknown" (:class:`WriteTimeoutError`,
:class:`LostLeadershipError`) from "the command itself failed" (:class:`CommandError`).
"""
from __future__ import annotations


class CKiteError(Exception):
    """Base class of every error ckite raises on purpose."""


class NotLeaderError(CKiteError):
    """This member is not the leader and could not forward the request.

    ``leader`` is the binding of the member believed to lead, when known, so a
    client can retry there.
    """

    def __init__(self, message: str = "not the leader", leader: str | None = None) -> None:
        super().__init__(message if leader is None else f"{message} (leader: {leader})")
        self.leader = leader


class LeaderTimeoutError(CKiteError, TimeoutError):
    """No leader was known within the timeout (no quorum, or an election is still running)."""


class WriteTimeoutError(CKiteError, TimeoutError):
    """A write was not applied within its timeout.

    The outcome is unknown: the entry may still commit later. Commands that must
    not run twice should carry their own idempotency key.
    """


class ReadTimeoutError(CKiteError, TimeoutError):
    """A linearizable read could not confirm leadership and catch up within its timeout."""


class LostLeadershipError(CKiteError):
    """The leader that accepted the request lost leadership before it completed.

    For a write the outcome is unknown unless the message says the entry was
    overwritten (then it certainly did not apply).
    """


class CommandError(CKiteError):
    """The state machine raised while applying a command; the entry stays committed.

    ``error_type`` names the original exception class (also across a forwarded call).
    """

    def __init__(self, message: str, error_type: str = "Exception") -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type


class UnknownCommandError(CKiteError):
    """A command type is not registered, so it can be neither encoded nor decoded."""


class EncodingError(CKiteError):
    """A command, result or message could not be encoded or decoded safely."""


class MembershipChangeError(CKiteError):
    """A membership change failed or is impossible (the last voter, a member that did not catch
    up, no commit within the timeout)."""


class MembershipChangeInProgressError(MembershipChangeError):
    """Another membership change is running; ``add_member``/``remove_member`` wait and retry."""


class StorageError(CKiteError):
    """The durable store failed (disk full, read-only, corrupt file): the member stops serving."""


class StoppedError(CKiteError):
    """The member is not started, or has been stopped."""


class RpcError(CKiteError):
    """A call to another member failed (timeout, broken connection, malformed reply).

    The request may or may not have been processed by the remote member.
    """


class UnreachableError(RpcError):
    """The member could not be reached at all (connection refused or timed out while
    connecting): the request was certainly not delivered, so it is safe to retry."""


class ProtocolError(RpcError):
    """A peer sent something Raft forbids (e.g. entries replacing committed ones): refused,
    nothing changed. Only a buggy or hostile member does this."""
