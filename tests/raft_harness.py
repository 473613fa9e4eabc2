"""A tiny deterministic driver for consensus cores: one fake clock, messages handed over by hand.

No threads, no sleeps, no network. A test moves the clock, ticks the cores and passes each
request to its receiver itself, so every outcome is exact and the situations the Raft paper
draws (partitions, delayed messages, crashes) are built step by step:

* ``send`` takes what a member wants to send a peer now; ``answer`` delivers it (possibly later,
  possibly twice) and feeds the reply back; ``deliver`` does both at once.
* ``pump(nodes)`` delivers everything deliverable among ``nodes`` (the members that can reach each
  other); a member left out is partitioned away.
* ``elect(node)`` drives one member to leadership; ``restart(node)`` is a crash and a restart on
  the same durable storage.
* ``spares`` are members outside the cluster, started as joiners (``join=True``, an empty
  configuration) as a new process would be, ready to be added by a membership change.
"""
from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from itertools import permutations
from typing import Any

from ckite.consensus.consensus import Consensus
from ckite.consensus.membership import Configuration
from ckite.consensus.settings import RaftSettings
from ckite.log.entry import LogEntry
from ckite.log.memory_storage import MemoryStorage
from ckite.messages import Request

SETTINGS = RaftSettings(min_election_timeout=1.0, max_election_timeout=2.0, heartbeat_interval=0.1)


def log_of(terms: Sequence[int], first_index: int = 1) -> list[LogEntry]:
    """Entries with the given terms at consecutive indexes (data names the index and term)."""
    return [LogEntry(first_index + offset, term, f"{first_index + offset}@{term}".encode())
            for offset, term in enumerate(terms)]


def terms_of(node: Consensus) -> list[int]:
    """The terms of a member's log, index 1 first."""
    return [entry.term for entry in node.log.slice(1, node.log.last_index + 1)]


class Harness:
    """``size`` members ``n1..nN`` on one fake clock, each with its own storage and seeded RNG.

    ``logs``/``terms``/``votes`` preload a member's durable state before it starts, as if it had
    lived through earlier terms (by default a member's term is its last log term).
    ``configuration`` is the one the founding members start with (by default: all of them as
    voters); ``spares`` more members ``n{size+1}..`` start as joiners outside it.
    """

    def __init__(self, size: int = 3, settings: RaftSettings = SETTINGS, *, seed: int = 0,
                 logs: dict[str, Sequence[int]] | None = None, terms: dict[str, int] | None = None,
                 votes: dict[str, str] | None = None, configuration: Configuration | None = None,
                 spares: int = 0) -> None:
        self.now = 0.0
        self.settings = settings
        self.seed = seed
        self.ids = [f"n{i}" for i in range(1, size + spares + 1)]
        self.spares = frozenset(self.ids[size:])
        self.configuration = configuration or Configuration.of(self.ids[:size])
        self.storages = {member_id: MemoryStorage() for member_id in self.ids}
        self.nodes: dict[str, Consensus] = {}
        for member_id in self.ids:
            log = log_of((logs or {}).get(member_id, ()))
            storage = self.storages[member_id]
            storage.append(log)
            term = (terms or {}).get(member_id, log[-1].term if log else 0)
            storage.save_term_and_vote(term, (votes or {}).get(member_id))
            self.restart(member_id)

    def __getitem__(self, member_id: str) -> Consensus:
        return self.nodes[member_id]

    def restart(self, member_id: str) -> Consensus:
        """Build (or rebuild, after a "crash") a member's core from its durable storage, and start it.
        A spare is built as a joining process is, every time: its log tells whether it was added."""
        rng = random.Random(self.seed * 1000 + self.ids.index(member_id))
        spare = member_id in self.spares
        node = Consensus(member_id, self.storages[member_id], Configuration.of([]) if spare else self.configuration,
                         self.settings, clock=lambda: self.now, rng=rng, join=spare)
        node.start()
        self.nodes[member_id] = node
        return node

    # --- time -----------------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def heartbeat(self) -> None:
        """Let one heartbeat interval pass (a hair more, so float rounding cannot leave it not quite due)."""
        self.advance(self.settings.heartbeat_interval * (1 + 1e-9))

    def advance_to(self, when: float) -> None:
        self.now = max(self.now, when)

    def tick_all(self, nodes: Iterable[str] | None = None) -> None:
        for member_id in nodes if nodes is not None else self.ids:
            self.nodes[member_id].tick()

    # --- messages -------------------------------------------------------------------------------

    def send(self, sender: str, receiver: str) -> tuple[Request, Any] | None:
        """What ``sender`` wants to send ``receiver`` now (taken, not yet delivered)."""
        return self.nodes[sender].next_request(receiver)

    def answer(self, sender: str, receiver: str, request: Request, context: Any) -> Any:
        """Deliver a taken request to ``receiver`` and feed its reply back to ``sender``."""
        response = self.nodes[receiver].handle_request(request)
        self.nodes[sender].handle_response(receiver, request, context, response)
        return response

    def deliver(self, sender: str, receiver: str) -> tuple[Request, Any] | None:
        """One round trip from ``sender`` to ``receiver``: (request, response), or None if nothing to send."""
        taken = self.send(sender, receiver)
        if taken is None:
            return None
        return taken[0], self.answer(sender, receiver, *taken)

    def pump(self, nodes: Iterable[str] | None = None, rounds: int = 50) -> int:
        """Deliver, one message per ordered pair per round, until nothing moves among ``nodes``.

        Returns how many round trips were made.
        """
        members = list(nodes if nodes is not None else self.ids)
        total = 0
        for _ in range(rounds):
            moved = sum(self.deliver(sender, receiver) is not None for sender, receiver in permutations(members, 2))
            if not moved:
                return total
            total += moved
        raise AssertionError(f"messages still flowing among {members} after {rounds} rounds")

    def run_for(self, seconds: float, nodes: Iterable[str] | None = None) -> None:
        """Let time pass in heartbeat steps, every member ticking, messages flowing among ``nodes``."""
        members = list(nodes if nodes is not None else self.ids)
        end = self.now + seconds
        while self.now < end:
            self.heartbeat()
            self.tick_all()
            self.pump(members)

    # --- elections ------------------------------------------------------------------------------

    def campaign(self, member_id: str, nodes: Iterable[str] | None = None) -> bool:
        """Let ``member_id``'s election timeout pass, tick it alone, pump among ``nodes``: did it win?"""
        node = self.nodes[member_id]
        self.advance_to(node.election_deadline)
        node.tick()
        self.pump(nodes)
        return node.is_leader

    def elect(self, member_id: str, nodes: Iterable[str] | None = None, attempts: int = 5) -> Consensus:
        """Drive ``member_id`` to leadership among ``nodes`` (all by default); a split vote or a
        follower's leader lease just costs another election timeout."""
        members = list(nodes if nodes is not None else self.ids)
        for _ in range(attempts):
            if self.campaign(member_id, members):
                return self.nodes[member_id]
        raise AssertionError(f"{member_id} did not win an election among {members} in {attempts} attempts")
