"""Scheduled faults: the nemesis breaks something, waits, heals it, waits, and again.

Each fault is a function that breaks the cluster now and returns how to heal it. The schedule
draws the fault and the timings from a seeded RNG (a failing run is replayed with its seed; the
cluster's own timing still varies), logs a ``start`` and a ``heal`` event on the history's
timeline, and heals whatever is broken when it is stopped, so the run always ends whole.

Faults (``FAULTS``): kill -9 the leader or a random member (restarted on its data directory by
the heal), pause one with SIGSTOP, partition a random minority away, isolate the leader, a
"bridge" (two sides that each see one middle member), one-way links, latency, loss, and a full
disk on one member (its data directory is a small tmpfs, filled with a ballast file). Every
fault leaves a majority able to work after the heal; none loses acknowledged data by design
(no data wipe: Raft does not promise to survive a lost vote or log).

Membership churn (``membership``): a member is removed from the configuration, stopped and wiped,
then started blank and added back.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.jepsen.cluster import JepsenCluster
from tests.jepsen.history import Recorder
from tests.jepsen.network import DELAY, LOSS
from tests.processes import Member

logger = logging.getLogger(__name__)

Heal = Callable[[], None]
#: A membership change waits for the new member to catch up as a learner, then for two commits.
MEMBERSHIP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Timing:
    """Seconds between faults (``quiet``) and of each fault (``hold``): uniform in each range."""

    quiet: tuple[float, float] = (2.0, 5.0)
    hold: tuple[float, float] = (3.0, 8.0)


class Nemesis:
    """Runs ``faults`` (names from ``FAULTS``) against ``cluster`` until stopped."""

    def __init__(self, cluster: JepsenCluster, recorder: Recorder, faults: list[str], seed: int,
                 timing: Timing = Timing()) -> None:
        unknown = [f for f in faults if f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; known: {sorted(FAULTS)}")
        self.cluster = cluster
        self.recorder = recorder
        #: Faults this cluster cannot suffer (latency without netem...): left out, and reported.
        self.skipped = [f for f in faults if f in NEEDS and not NEEDS[f](cluster)]
        self.faults = [f for f in faults if f not in self.skipped]
        self.rng = random.Random(seed)
        self.timing = timing
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="jepsen-nemesis", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the schedule and wait until the fault in force, if any, is healed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        try:
            while self.faults and not self._stop.wait(self.rng.uniform(*self.timing.quiet)):
                name = self.rng.choice(self.faults)
                detail, heal = FAULTS[name](self)
                self.recorder.event("start", name, detail)
                logger.info("nemesis: %s (%s)", name, detail)
                self._stop.wait(self.rng.uniform(*self.timing.hold))
                heal()
                self.recorder.event("heal", name, detail)
                logger.info("nemesis: healed %s", name)
        except BaseException as exc:   # reported by the runner: a nemesis that cannot act voids the run
            self.error = exc
            logger.exception("nemesis failed")
        try:
            self.heal_all()
        except BaseException as exc:
            self.error = self.error or exc
            logger.exception("nemesis could not heal the cluster")

    def heal_all(self) -> None:
        """Everything back: links healed, paused members resumed, stopped ones started."""
        self.cluster.network.heal()
        for member in self.cluster.members:
            if member.paused:
                self.cluster.resume(member)
        self.cluster.start_all()

    # --- helpers for the faults ---------------------------------------------------------------

    def leader_or_random(self) -> Member:
        return self.cluster.current_leader() or self.rng.choice(self.cluster.running())

    def minority(self) -> list[Member]:
        size = self.rng.randint(1, (len(self.cluster.members) - 1) // 2)
        return self.rng.sample(self.cluster.members, size)

    def others(self, members: list[Member]) -> list[Member]:
        return [m for m in self.cluster.members if m not in members]


def _names(members: list[Member]) -> str:
    return " ".join(m.name for m in members)


# --- the faults: each breaks something now and returns (what it did, how to heal it) ----------

def kill_leader(nemesis: Nemesis) -> tuple[str, Heal]:
    return _kill(nemesis, [nemesis.leader_or_random()])


def kill_random(nemesis: Nemesis) -> tuple[str, Heal]:
    return _kill(nemesis, nemesis.minority())


def _kill(nemesis: Nemesis, victims: list[Member]) -> tuple[str, Heal]:
    cluster = nemesis.cluster
    for member in victims:
        if member.running:
            cluster.kill(member)

    def restart() -> None:
        for member in victims:
            if not member.running:
                cluster.start(member)
    return f"kill -9 {_names(victims)}", restart


def pause(nemesis: Nemesis) -> tuple[str, Heal]:
    cluster = nemesis.cluster
    victim = nemesis.leader_or_random() if nemesis.rng.random() < 0.5 else nemesis.rng.choice(cluster.running())
    cluster.pause(victim)
    return f"SIGSTOP {victim.name}", lambda: cluster.resume(victim)


def partition_random(nemesis: Nemesis) -> tuple[str, Heal]:
    minority = nemesis.minority()
    majority = nemesis.others(minority)
    nemesis.cluster.network.partition([m.name for m in minority], [m.name for m in majority])
    return f"{_names(minority)} | {_names(majority)}", nemesis.cluster.network.heal


def isolate_leader(nemesis: Nemesis) -> tuple[str, Heal]:
    leader = nemesis.leader_or_random()
    rest = nemesis.others([leader])
    nemesis.cluster.network.partition([leader.name], [m.name for m in rest])
    return f"{leader.name} | {_names(rest)}", nemesis.cluster.network.heal


def bridge(nemesis: Nemesis) -> tuple[str, Heal]:
    """Two sides that cannot talk, and one member in the middle that talks to both."""
    members = nemesis.rng.sample(nemesis.cluster.members, len(nemesis.cluster.members))
    middle, half = members[0], (len(members) - 1) // 2
    left, right = members[1:1 + half], members[1 + half:]
    nemesis.cluster.network.cut((a.name, b.name) for x, y in ((left, right), (right, left)) for a in x for b in y)
    return f"{_names(left)} | {middle.name} | {_names(right)}", nemesis.cluster.network.heal


def one_way(nemesis: Nemesis) -> tuple[str, Heal]:
    """One member (often the leader) can send but not receive, or receive but not send."""
    victim = nemesis.leader_or_random() if nemesis.rng.random() < 0.5 else nemesis.rng.choice(nemesis.cluster.members)
    others = [m.name for m in nemesis.others([victim])]
    if nemesis.rng.random() < 0.5:
        nemesis.cluster.network.cut((victim.name, other) for other in others)
        detail = f"{victim.name} cannot send"
    else:
        nemesis.cluster.network.cut((other, victim.name) for other in others)
        detail = f"{victim.name} cannot receive"
    return detail, nemesis.cluster.network.heal


def latency(nemesis: Nemesis) -> tuple[str, Heal]:
    delay, jitter = nemesis.rng.uniform(0.02, 0.2), nemesis.rng.uniform(0.0, 0.1)
    nemesis.cluster.network.slow(nemesis.cluster.network.pairs(), delay=delay, jitter=jitter)
    return f"every link +{delay * 1000:.0f}±{jitter * 1000:.0f}ms", nemesis.cluster.network.heal


def loss(nemesis: Nemesis) -> tuple[str, Heal]:
    rate = nemesis.rng.uniform(0.1, 0.5)
    nemesis.cluster.network.slow(nemesis.cluster.network.pairs(), loss=rate)
    return f"every link loses {rate:.0%}", nemesis.cluster.network.heal


def disk_full(nemesis: Nemesis) -> tuple[str, Heal]:
    """Fill one member's data directory (often the leader's) until writes fail with ENOSPC."""
    cluster, disks = nemesis.cluster, nemesis.cluster.disks
    assert disks is not None
    victim = nemesis.leader_or_random() if nemesis.rng.random() < 0.5 else nemesis.rng.choice(cluster.members)
    taken = disks.fill(victim.data_dir)

    def heal() -> None:
        """Free the disk, then do what an operator does: restart the member, which took itself
        out of service ("Failed") when a durable write failed, rather than go on unpersisted."""
        disks.free(victim.data_dir)
        cluster.restart(victim)
    return f"{victim.name} disk full ({taken >> 20} MiB of ballast)", heal


def membership(nemesis: Nemesis) -> tuple[str, Heal]:
    """Churn: remove a member (sometimes the leader, which then hands over) from the configuration,
    stop it and wipe its data; the heal starts it blank and adds it back, so it rejoins as a
    learner, catches up and becomes a voter again through joint consensus."""
    cluster = nemesis.cluster
    victim = nemesis.leader_or_random() if nemesis.rng.random() < 0.3 else nemesis.rng.choice(cluster.running())
    _change_membership(nemesis, victim, remove=True)
    cluster.stop(victim)
    cluster.wipe(victim)

    def rejoin() -> None:
        cluster.start(victim)
        _change_membership(nemesis, victim, remove=False)
    return f"remove {victim.name} and wipe it", rejoin


def _change_membership(nemesis: Nemesis, member: Member, remove: bool) -> None:
    """Ask the other members (any of them forwards to the leader) until the leader's configuration
    shows the change: a request that timed out may still have been carried out."""
    cluster = nemesis.cluster
    deadline = time.monotonic() + MEMBERSHIP_TIMEOUT
    last: object = None
    while time.monotonic() < deadline:
        leader = cluster.current_leader([m for m in cluster.running() if m is not member] or None)
        members = ((cluster.status(leader) or {}).get("cluster") or {}).get("members", []) if leader else []
        if leader is not None and (member.binding in members) != remove:
            return
        via = nemesis.rng.choice([m for m in cluster.running() if m is not member])
        client = via.client(MEMBERSHIP_TIMEOUT)
        try:
            last = client.remove_member(member.binding) if remove else client.add_member(member.binding)
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise RuntimeError(f"could not {'remove' if remove else 'add'} {member.name} within {MEMBERSHIP_TIMEOUT}s: "
                       f"{last!r}")


FAULTS: dict[str, Callable[[Nemesis], tuple[str, Heal]]] = {
    "kill-leader": kill_leader, "kill-random": kill_random, "pause": pause,
    "partition": partition_random, "isolate-leader": isolate_leader, "bridge": bridge,
    "one-way": one_way, "latency": latency, "loss": loss, "disk-full": disk_full, "membership": membership,
}
#: What a fault needs of the cluster, where not every cluster has it.
NEEDS: dict[str, Callable[[JepsenCluster], bool]] = {
    "latency": lambda cluster: DELAY in cluster.network.supports,
    "loss": lambda cluster: LOSS in cluster.network.supports,
    "disk-full": lambda cluster: cluster.disks is not None,
}
#: What ``--nemesis all`` runs.
ALL = list(FAULTS)
