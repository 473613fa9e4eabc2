"""CKite: the blocking API an application uses (CKite's ``CKite`` trait, in snake_case)."""
from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from ckite.commands import ReadCommand, WriteCommand
from ckite.bindings import parse_binding
from ckite.consensus.reconfiguration import ChangeKind
from ckite.log.data_dir import DataDir
from ckite.log.storage import LogStorage
from ckite.runtime.node import RaftNode

if TYPE_CHECKING:
    from ckite.admin import AdminServer


class CKite:
    """One member of a Raft cluster. Build it with :class:`~ckite.CKiteBuilder`.

    Every blocking call takes an optional ``timeout`` in seconds (default: the builder's)
    and raises a :mod:`ckite.errors` exception instead of hanging.
    """

    def __init__(self, node: RaftNode, storage: LogStorage, data_dir: DataDir | None = None) -> None:
        self._node = node
        self._storage = storage
        self._data_dir = data_dir
        self._admin: "AdminServer | None" = None

    def attach_admin(self, admin: "AdminServer") -> None:
        """Serve ``admin`` with this member: started by :meth:`start`, stopped by :meth:`stop`."""
        self._admin = admin

    @property
    def admin(self) -> "AdminServer | None":
        """The admin console (a Flask app in ``admin.app`` to add routes to), or None when disabled."""
        return self._admin

    @property
    def id(self) -> str:
        """This member's binding, its identity in the cluster."""
        return self._node.id

    def start(self) -> None:
        """Start serving peers and take part in elections, and the admin console; returns at once.

        Raises OSError when a port is taken (nothing is left running then)."""
        self._node.start()
        if self._admin is not None:
            try:
                self._admin.start()
            except BaseException:
                self.stop()
                raise

    def stop(self) -> None:
        """Stop every thread and close the storage; idempotent. A stopped member cannot restart:
        build a new one on the same data dir."""
        if self._admin is not None:
            self._admin.stop()   # first: requests in progress still reach a running node
        self._node.stop()
        self._storage.close()
        if self._data_dir is not None:
            self._data_dir.close()   # last: another process may open it from now on

    def write(self, command: WriteCommand, timeout: float | None = None) -> Any:
        """Replicate ``command`` (forwarded to the leader if need be) and return what the state
        machine's ``apply`` returned on the leader.

        Raises WriteTimeoutError (outcome unknown), LostLeadershipError, CommandError.
        """
        return self._node.write(command, timeout)

    def write_async(self, command: WriteCommand, timeout: float | None = None) -> Future:
        """Submit ``command`` and return a future of its result, so that many writes can be in
        flight at once (they are appended to the log in batches)."""
        return self._node.write_async(command, timeout)

    def read(self, command: ReadCommand, timeout: float | None = None) -> Any:
        """Linearizable read: sees every write acknowledged before it was called (answered on the
        leader through a ReadIndex round, or from its lease with ``with_lease_reads()``)."""
        return self._node.read(command, timeout)

    def read_local(self, command: ReadCommand) -> Any:
        """Read this member's state machine now: no network, possibly stale."""
        return self._node.read_local(command)

    def is_leader(self, timeout: float | None = None) -> bool:
        """Waits for an election to settle, then says whether this member leads (confirmed by a
        quorum: a ReadIndex round, or with lease reads a valid lease)."""
        return self._node.is_leader(timeout)

    def add_member(self, binding: str, timeout: float | None = None) -> bool:
        """Add ``binding`` to the cluster (forwarded to the leader); returns True once the new
        configuration is committed. The new member first catches up as a learner, so start it
        before or soon after calling this. A change already in progress makes this one wait.

        Raises MembershipChangeError (it did not catch up, or no commit within the timeout).
        """
        return self._node.change_membership(ChangeKind.ADD, parse_binding(binding), timeout)

    def remove_member(self, binding: str, timeout: float | None = None) -> bool:
        """Remove ``binding`` from the cluster; a leader that removes itself hands leadership
        over and steps down once the new configuration is committed."""
        return self._node.change_membership(ChangeKind.REMOVE, parse_binding(binding), timeout)

    def transfer_leadership(self, to: str | None = None, timeout: float | None = None) -> bool:
        """Hand leadership to ``to`` (default: the most up-to-date voter), e.g. before a rolling
        restart; writes wait meanwhile. Raises LeaderTimeoutError if no transfer happened."""
        return self._node.transfer_leadership(None if to is None else parse_binding(to), timeout)

    @property
    def members(self) -> frozenset[str]:
        """Every member of the current configuration, this one included."""
        return self._node.consensus.configuration.members

    @property
    def leader(self) -> str | None:
        """The binding of the member this one believes leads, if any."""
        return self._node.consensus.leader_id

    def status(self) -> dict:
        """Term, role, leader, configuration and log indexes, as the admin console shows them."""
        return self._node.status()
