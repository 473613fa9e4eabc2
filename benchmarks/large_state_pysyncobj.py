"""PySyncObj in the large-state benchmark: three ``pysyncobj-compaction`` member processes.

PySyncObj has no server for clients: the writes run inside the leader's process
(``benchmarks.load.fill`` with one write in flight, through ``benchmarks.member``), as the main
benchmark's load does. Its status comes from outside, through PySyncObj's own utility protocol
(the ``status`` command ``syncobj_admin -status`` sends), which each node answers on its tick
thread: the counterpart of kvstore's ``/status``. It names no snapshot, so the time to take
one is not measured; the log compactions show as drops of the log length. A wiped node has
caught up when its status says it applied the index of the last write: then it holds the last
key (its dict cannot be read from outside its process).
"""
from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.large_state_row import Plan
from benchmarks.runner import Cluster
from benchmarks.status_poller import Probe, StatusPoller

SYSTEM = "pysyncobj-compaction"
#: PySyncObj's raft states, as its status numbers them.
STATES = {0: "Follower", 1: "Candidate", 2: "Leader"}
#: Longest wait for a status answer.
STATUS_TIMEOUT = 30.0
#: The fill gives up past this (``load.fill``'s ``give_up_after``); the row then reports what it wrote.
FILL_GIVE_UP = 3600.0


def status_probe(binding: str, timeout: float = STATUS_TIMEOUT) -> Probe:
    """A probe of the node at ``binding`` through PySyncObj's TcpUtility."""
    from pysyncobj.utility import TcpUtility, UtilityException

    utility = TcpUtility(timeout=timeout)

    def status() -> dict[str, Any]:
        sent = time.monotonic()
        try:
            answer = utility.executeCommand(binding, ["status"])
        except UtilityException as exc:
            if time.monotonic() - sent >= timeout:
                raise TimeoutError(str(exc)) from exc
            raise ConnectionError(str(exc)) from exc
        leader = answer.get("leader")
        return {"term": answer["raft_term"], "leader": None if leader is None else leader.id,
                "state": STATES.get(answer["state"]), "applied": answer["last_applied"],
                "commit": answer["commit_idx"], "log_length": answer["log_len"]}
    return status


class PySyncObjCluster:
    """The system adapter for ``benchmarks.large_state_row`` (see there for the methods)."""

    name = "pysyncobj"

    def __init__(self, directory: Path, plan: Plan) -> None:
        self.cluster = Cluster(SYSTEM, directory)
        self.bindings = list(self.cluster.bindings)
        self._target: int | None = None   # the log index of the last write
        self._probe: Probe | None = None   # asks the wiped node whether it has caught up

    def pids(self) -> list[int]:
        return self.cluster.pids

    def data_dirs(self) -> list[Path]:
        return [self.cluster.data_dir(n) for n in range(len(self.bindings))]

    def start(self) -> None:
        self.cluster.wait_started()
        self.cluster.leader()

    def probe(self, n: int) -> Probe:
        return status_probe(self.bindings[n])

    def write(self, plan: Plan, poller: StatusPoller, aborted: Callable[[], bool]) -> dict[str, Any]:
        """The whole plan inside the leader's process (``aborted`` needs no check here: the
        memory guard kills the members, which ends the request)."""
        leader, _ = self.cluster.leader()
        args = {"keys": plan.keys, "overwrites": plan.overwrites, "size": plan.value_bytes, "inflight": 1,
                "prefix": plan.prefix, "give_up_after": FILL_GIVE_UP}
        result = self.cluster.members[leader].request({"op": "run", "workload": "fill", "args": args},
                                                      FILL_GIVE_UP + 120)["result"]
        # Every write was applied on the node that made it before it was acknowledged.
        self._target = self.probe(leader)()["applied"]
        return {"acknowledged": result["ops"], "failed": result["errors"], "failures": result["error_samples"],
                "elapsed_s": result["elapsed_s"], "longest_write_s": None}

    def wipe(self, n: int) -> str:
        self.cluster.members[n].stop()
        shutil.rmtree(self.cluster.data_dir(n), ignore_errors=True)
        return "stopped (SyncObj.destroy_synchronous)"

    def restart(self, n: int) -> None:
        self.cluster.relaunch(n)
        self._probe = self.probe(n)

    def caught_up(self, n: int) -> bool:
        assert self._target is not None and self._probe is not None
        try:
            return self._probe()["applied"] >= self._target
        except OSError:
            return False

    def kill(self) -> None:
        for member in self.cluster.members:
            member.process.kill()

    def stop(self) -> None:
        self.cluster.stop()
