"""Client sessions through faults: exactly-once writes however requests are duplicated or delayed.

Clients open sessions and send numbered requests through whichever member leads; a request
whose outcome they have not heard yet is sent again, later, maybe through another leader (a
lost reply, a leader change between append and reply), and so turns up in the log more than
once. Members crash and restart, some from their own snapshots, others catch up through the
leader's. One client falls silent for longer than the session timeout (in the log's time), and
its next request must be refused. The cluster (tests/simulation/cluster.py) checks after every
entry that each member applies the same thing at each index, expires the same sessions at the
same index, and never applies a request twice; at the end, every acknowledged request is
applied exactly once on every member.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from ckite.errors import SessionExpiredError
from ckite.sessions.request import OPEN_SESSION, ClientRequest
from ckite.sessions.table import Outcome
from tests.simulation.cluster import SESSION_TIMEOUT_MS, SIM_SETTINGS, SimCluster
from tests.simulation.schedule import _inject_fault, heal_and_converge


@dataclass
class SimClient:
    name: str
    session: int | None = None
    opening: bool = False
    next_seq: int = 1
    in_flight: dict[int, bytes] = field(default_factory=dict)   # seq -> command, no outcome heard yet
    lowest_open: int = 1
    done: set[int] = field(default_factory=set)
    last_sent: float = 0.0
    refused: int = 0            # requests refused because the session had expired

    def request(self, seq: int) -> bytes:
        return ClientRequest(self.session or 0, seq, self.lowest_open, self.in_flight[seq]).encode()

    def settle(self, seq: int) -> None:
        self.in_flight.pop(seq, None)
        self.done.add(seq)
        while self.lowest_open in self.done:
            self.done.discard(self.lowest_open)
            self.lowest_open += 1


class SessionRun:
    def __init__(self, seed: int, seconds: float) -> None:
        variant = random.Random(seed)
        settings = replace(SIM_SETTINGS, compaction_threshold=variant.choice([0, 10, 25]),
                           snapshot_chunk_bytes=variant.choice([64, 512]))
        self.cluster = SimCluster(seed, variant.choice([3, 5]), settings)
        self.rng = self.cluster.rng
        self.seconds = seconds
        self.clients = [SimClient(f"c{i}") for i in range(3)]
        self.acknowledged: list[bytes] = []
        self.duplicates_sent = 0
        #: The client that falls silent past the session timeout, and when.
        self.sleeper, self.sleep_at = self.clients[0], seconds * 0.4

    def run(self) -> SimCluster:
        cluster, rng = self.cluster, self.rng
        next_fault = 0.5
        while cluster.now < self.seconds:
            cluster.run_until(cluster.now + rng.uniform(0.005, 0.040))
            client = rng.choice(self.clients)
            if not (client is self.sleeper and self._asleep()):
                self._act(client)
            if cluster.now >= next_fault:
                next_fault = cluster.now + rng.uniform(0.3, 1.5)
                _inject_fault(cluster, rng)
        heal_and_converge(cluster)
        self._check()
        return cluster

    def _asleep(self) -> bool:
        """Silent for a whole session timeout, and more, from ``sleep_at`` on."""
        return self.sleep_at <= self.cluster.now < self.sleep_at + 1.5 * SESSION_TIMEOUT_MS / 1000

    def _leader(self) -> str | None:
        leaders = self.cluster.leaders()
        return leaders[0].member_id if leaders else None

    def _act(self, client: SimClient) -> None:
        leader = self._leader()
        if leader is None:
            return
        if client.session is None:
            if not client.opening or self.rng.random() < 0.1:   # opening again is harmless
                client.opening = self.cluster.client_request(leader, OPEN_SESSION.encode(),
                                                             lambda outcome: self._opened(client, outcome))
            return
        if client.in_flight and (self.rng.random() < 0.4 or len(client.in_flight) >= 4):
            seq = self.rng.choice(sorted(client.in_flight))   # no outcome heard yet: send it again
            self.duplicates_sent += 1
        else:
            seq = client.next_seq
            client.next_seq += 1
            client.in_flight[seq] = f"{client.name}.{client.session}-{seq}".encode()
        session = client.session
        if self.cluster.client_request(leader, client.request(seq),
                                       lambda outcome: self._learned(client, session, seq, outcome)):
            client.last_sent = self.cluster.now

    def _opened(self, client: SimClient, outcome: Outcome) -> None:
        if client.session is None:
            client.session, client.opening = outcome.result, False
            client.next_seq = client.lowest_open = 1
            client.in_flight.clear()
            client.done.clear()

    def _learned(self, client: SimClient, session: int, seq: int, outcome: Outcome) -> None:
        if session != client.session or seq not in client.in_flight:
            return   # about an earlier session, or an outcome already heard
        if isinstance(outcome.error, SessionExpiredError):
            client.refused += 1
            client.session = None   # open a new one: what the request asked was not applied
            return
        assert outcome.error is None, outcome.error
        self.acknowledged.append(client.in_flight[seq])
        client.settle(seq)

    def _check(self) -> None:
        cluster = self.cluster
        final = cluster.final_members()
        for member in cluster.up_members():
            if member.member_id not in final:
                continue
            applied = [data for data in member.applied if data.startswith(b"c")]
            if len(applied) != len(set(applied)):
                cluster.fail(f"exactly once: {member.member_id} applied a session request twice")
            missing = set(self.acknowledged) - set(applied)
            if missing:
                cluster.fail(f"acknowledged session requests not applied on {member.member_id}: {sorted(missing)[:5]}")


def run_session_schedule(seed: int, seconds: float = 20.0) -> SessionRun:
    run = SessionRun(seed, seconds)
    run.run()
    return run
