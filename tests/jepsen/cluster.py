"""The cluster under test: ``tests.processes.ProcessCluster`` with its members placed on the fault
network, and the few questions the nemesis and the checks ask it.

Processes (start, kill -9, pause, restart, wipe) are ProcessCluster's; this module only moves each
member to the address the network gives it and wraps its command line (see ``network.py``), puts
its data directory on a small file system the nemesis can fill (``disk.py``, root only), and
remembers which exits the nemesis caused, so that any other one counts as a crash.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from tests.jepsen import disk
from tests.jepsen.disk import Disks
from tests.jepsen.network import create_network
from tests.processes import Member, ProcessCluster

#: ckite's role name for a member out of service (see ckite/consensus/lifecycle.py).
FAILED = "Failed"
#: The nemesis runs faults on 2 shared cores: a start may take longer than a quiet test's.
START_TIMEOUT = 40.0


class JepsenCluster(ProcessCluster):
    """``size`` members whose links to each other are ``self.network``'s to break; ``network`` is
    ``auto``, ``netns`` or ``proxy``."""

    def __init__(self, base_dir: Path | str, size: int, seed: int = 0, extra_args: Sequence[str] = (),
                 network: str = "auto") -> None:
        super().__init__(base_dir, size, extra_args, start_timeout=START_TIMEOUT)
        #: Size-limited data directories (tmpfs) where this process may mount them, else None.
        self.disks = Disks() if disk.available() is None else None
        for member in self.members if self.disks else ():
            self.disks.mount(member.data_dir)
        self.network = create_network(network, {m.name: (m.host, m.port) for m in self.members}, seed)
        for member in self.members:
            member.host = self.network.host(member.name)
        for member in self.members:
            member.peers = tuple(m.binding for m in self.members if m is not member)
        self._lock = threading.Lock()
        self._expected_exits: set[int] = set()   # pids the nemesis (or the runner) ended on purpose

    def command(self, member: Member) -> list[str]:
        return self.network.command(member.name, super().command(member))

    def kill(self, member: Member) -> int:
        self._expect_exit(member)
        return super().kill(member)

    def stop(self, member: Member, timeout: float = 10.0) -> int:
        self._expect_exit(member)
        return super().stop(member, timeout)

    def _expect_exit(self, member: Member) -> None:
        if member.pid is not None:
            with self._lock:
                self._expected_exits.add(member.pid)

    def crashed(self) -> list[tuple[Member, int]]:
        """Members whose process exited without the nemesis asking: (member, exit status)."""
        with self._lock:
            expected = set(self._expected_exits)
        return [(m, m.process.returncode) for m in self.members
                if m.process is not None and m.process.poll() is not None and m.pid not in expected]

    def current_leader(self, among: Sequence[Member] | None = None) -> Member | None:
        """The member that says it leads in the highest term, without waiting for agreement:
        during a partition two may believe they lead, and the newer term is the real one."""
        best: tuple[int, Member] | None = None
        for member in among if among is not None else self.running():
            cluster = (self.status(member) or {}).get("cluster") or {}
            if cluster.get("state") == "Leader" and (best is None or cluster["term"] > best[0]):
                best = (cluster["term"], member)
        return best[1] if best else None

    def out_of_service(self, member: Member) -> str | None:
        """Why ``member`` took itself out of service (ckite's ``Failed`` role, after a durable
        write failed), or None while it is in service or does not answer."""
        cluster = (self.status(member) or {}).get("cluster") or {}
        if cluster.get("state") != FAILED:
            return None
        return str((cluster.get("stateInfo") or {}).get("failure", "no reason given"))

    def close(self) -> None:
        super().close()
        if self.disks is not None:
            self.disks.close()
        self.network.close()
