"""Membership changes over real kvstore processes (issue 5, Raft §6 and thesis §4.2).

Grow 3 -> 5 -> 3 while a client writes continuously through HTTP, and measure how long writes
stall during each kind of change (add a member with ``--join``, remove a follower, remove the
leader); remove the leader; add a member that can only catch up through a snapshot; hand
leadership to a named member with ``python -m kvstore.control`` (and its other command, ``incr``).

The stalls are printed (``pytest -s``) and written to ``artifacts/membership-stalls.json``:
``scripts/test -m processes tests/test_membership_processes.py -s``. A stall is the longest time
between two consecutive acknowledged writes of the one client, among the pairs that overlap the
change; the client writes one key at a time, so a normal gap is one write's latency.
"""
from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from kvstore.cli import ADMIN_TOKEN_ENV
from tests import processes
from tests.processes import HttpResult, KVClient, Member, ProcessCluster
from tests.terminal import CTRL_C, Terminal
from tests.waiting import wait_for

pytestmark = pytest.mark.processes
process_clusters = processes.process_clusters   # the fixture, made visible to this module's tests

ROOT = Path(__file__).resolve().parent.parent
STALLS_ARTIFACT = ROOT / "artifacts" / "membership-stalls.json"
#: One change, a new process's start (seconds of imports on 2 busy cores) and catch-up included.
CHANGE_TIMEOUT = 40.0
#: Writes keep succeeding: no change may stop them for longer than this. A removed leader hands
#: over at once (TimeoutNow), so even that change should stall for well under an election timeout
#: plus a forwarded write's retry; the bound leaves room for a loaded machine.
STALL_LIMIT = 5.0
#: A member started by the test is killed by the fixture; this is just the request's own bound.
REQUEST_TIMEOUT = CHANGE_TIMEOUT
#: Rounds of 3 -> 5 -> 3 (add, add, transfer, remove a follower, remove the leader): more samples of each stall.
ROUNDS = 3
#: How long the writer runs before any change, to show a normal gap between two writes.
STEADY_WINDOW = 1.0
ADMIN_TOKEN = "membership-test-token"


@dataclass(frozen=True)
class Attempt:
    """One write of the client: its key and value, when it was sent and answered, and the HTTP
    status (None: no answer, so its outcome is unknown)."""

    key: str
    value: str
    sent: float
    answered: float
    status: int | None


class Writer:
    """A client thread putting distinct keys one at a time through one member's ``/put``."""

    def __init__(self, member: Member) -> None:
        self.client = member.client()
        self.attempts: list[Attempt] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-writer", daemon=True)
        self._acked = threading.Condition()

    def start(self) -> Writer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * processes.HTTP_TIMEOUT)
        assert not self._thread.is_alive(), "the writer did not stop"

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            key, value = f"key{i:05d}", f"value{i}"
            sent = time.monotonic()
            try:
                status: int | None = self.client.put(key, value).status
            except (OSError, http.client.HTTPException):   # no (whole) answer: the outcome is unknown
                status = None
            with self._acked:
                self.attempts.append(Attempt(key, value, sent, time.monotonic(), status))
                self._acked.notify_all()
            if status != 200:
                self._stop.wait(0.02)   # a refusal comes back at once: do not spin on it
            i += 1

    def acked(self) -> list[Attempt]:
        with self._acked:
            return [a for a in self.attempts if a.status == 200]

    def wait_acked_after(self, moment: float, count: int = 5, timeout: float = CHANGE_TIMEOUT) -> None:
        """Until ``count`` writes sent after ``moment`` were acknowledged: writes go on after a change."""
        def enough() -> bool:
            return sum(a.sent >= moment for a in self.acked()) >= count
        with self._acked:
            if not self._acked.wait_for(enough, timeout):
                raise AssertionError(f"fewer than {count} writes acknowledged within {timeout}s of the change; "
                                     f"last attempts: {self.attempts[-5:]}")

    def longest_gap(self, start: float, end: float) -> float:
        """The longest time between two consecutive acknowledgements, among the pairs that overlap
        [start, end] (so a stall that began before the change, or ended after it, counts whole)."""
        done = [a.answered for a in self.acked()]
        gaps = [later - earlier for earlier, later in zip(done, done[1:], strict=False)
                if later >= start and earlier <= end]
        return max(gaps, default=0.0)

    def summary(self, kind: str, start: float, end: float) -> dict:
        window = [a for a in self.attempts if start <= a.sent <= end]
        return {"change": kind, "durationMs": round((end - start) * 1000),
                "longestWriteGapMs": round(self.longest_gap(start, end) * 1000),
                "writesAcked": sum(a.status == 200 for a in window),
                "writesRefused": sum(a.status not in (200, None) for a in window),
                "writesUnanswered": sum(a.status is None for a in window)}


def configuration(cluster: ProcessCluster, member: Member) -> dict | None:
    status = cluster.status(member)
    return status["cluster"]["configuration"] if status else None


def settled_with_voters(cluster: ProcessCluster, members: Sequence[Member], voters: Sequence[Member]) -> bool:
    """Every one of ``members`` has the simple (not joint) configuration whose voters are ``voters``."""
    wanted = sorted(m.binding for m in voters)
    for member in members:
        config = configuration(cluster, member)
        if config is None or config["joint"] or sorted(config["voters"]) != wanted or config["learners"]:
            return False
    return True


def state_of(cluster: ProcessCluster, member: Member) -> str | None:
    status = cluster.status(member)
    return status["cluster"]["state"] if status else None


def control(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m kvstore.control ARGS``, the operator's command (``env``: more environment)."""
    environment = {k: v for k, v in os.environ.items() if k != ADMIN_TOKEN_ENV} | (env or {})
    return subprocess.run([sys.executable, "-m", "kvstore.control", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=REQUEST_TIMEOUT + 30, env=environment)


def record_stalls(results: list[dict]) -> dict:
    """Print the stalls and write them to the artifact; returns the longest stall (ms) per kind of change."""
    longest: dict[str, int] = {}
    for result in results:
        longest[result["change"]] = max(longest.get(result["change"], 0), result["longestWriteGapMs"])
    STALLS_ARTIFACT.parent.mkdir(exist_ok=True)
    STALLS_ARTIFACT.write_text(json.dumps({"recorded": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                           "longestWriteGapMsByChange": longest, "changes": results}, indent=2) + "\n")
    print("\nwrite stalls during membership changes (one client, sequential /put through a member that stays):")
    for result in results:
        print(f"  {result['change']:<20} {result['longestWriteGapMs']:>6} ms   (the change took "
              f"{result['durationMs']} ms; {result['writesAcked']} writes acked, {result['writesRefused']} refused, "
              f"{result['writesUnanswered']} unanswered)")
    print("longest per kind: " + ", ".join(f"{kind} {ms} ms" for kind, ms in longest.items()))
    print(f"(written to {STALLS_ARTIFACT})")
    return longest


class Changes:
    """The changes of the grow-and-shrink test, each timed and summarised against the writer."""

    def __init__(self, cluster: ProcessCluster, writer: Writer, stays: Member) -> None:
        self.cluster, self.writer, self.stays = cluster, writer, stays
        self.voters = list(cluster.running())
        self.windows: list[tuple[str, float, float]] = []

    def timed(self, kind: str, change) -> None:
        started = time.monotonic()
        change()
        ended = time.monotonic()
        self.windows.append((kind, started, ended))
        self.writer.wait_acked_after(ended)   # writes go on after the change

    def results(self) -> list[dict]:
        """Each change's summary; once the writer has stopped, so that a write in flight across the
        end of a change is counted."""
        return [self.writer.summary(kind, started, ended) for kind, started, ended in self.windows]

    def add(self) -> None:
        """A new member started with ``--join``: the change lasts until every member has it as a voter."""
        new = self.cluster.new_member(join=True)
        self.voters.append(new)
        self.cluster.start(new, wait=False)
        wait_for(lambda: settled_with_voters(self.cluster, self.voters, self.voters), CHANGE_TIMEOUT,
                 f"{new.name} to be a voter everywhere", interval=0.05)

    def transfer(self, target: Member) -> None:
        done = control("transfer", "--to", target.binding, "--admin", self.stays.admin_url)
        assert done.returncode == 0, done.stderr
        assert self.cluster.leader(among=self.voters, timeout=CHANGE_TIMEOUT) is target

    def remove(self, member: Member) -> None:
        """Asked through the member that stays, which forwards it to the leader; answered once
        C_new is committed. A removed leader's successor must be agreed on by the rest."""
        answer = KVClient(self.stays.admin_url, REQUEST_TIMEOUT).remove_member(member.binding)
        assert answer.status == 200, answer.text
        assert member.binding in answer.json()["removed"]
        self.voters.remove(member)
        assert self.cluster.leader(among=self.voters, timeout=CHANGE_TIMEOUT) is not member

    def retire(self, member: Member) -> None:
        """A removed member says so, then is stopped (two cores: no idle processes)."""
        wait_for(lambda: state_of(self.cluster, member) == "Removed", CHANGE_TIMEOUT, f"{member.name} to say Removed")
        self.cluster.stop(member)


def test_grow_three_to_five_and_back_to_three_while_a_client_writes_no_acked_write_is_lost(process_clusters):
    """Thesis §4.2.1: a new member catches up as a learner, so adding it does not stall writes;
    §4.2.2: a leader that removes itself steps down once C_new is committed, and hands over;
    §3.10: a leadership transfer stalls writes for about one round trip and an election."""
    cluster = process_clusters(3).start_all()
    stays = next(m for m in cluster if m is not cluster.leader())   # the client's member: never removed
    writer = Writer(stays).start()
    changes = Changes(cluster, writer, stays)
    try:
        writer.wait_acked_after(time.monotonic(), count=20)
        changes.timed("none (steady)", lambda: time.sleep(STEADY_WINDOW))   # a normal gap, for comparison
        for _ in range(ROUNDS):   # 3 -> 4 -> 5 -> 4 -> 3
            changes.timed("add (--join)", changes.add)
            changes.timed("add (--join)", changes.add)
            leader = cluster.leader(among=changes.voters)
            target = next(m for m in reversed(changes.voters) if m not in (leader, stays))
            changes.timed("transfer leadership", lambda target=target: changes.transfer(target))
            follower = next(m for m in changes.voters if m not in (target, stays))
            changes.timed("remove follower", lambda follower=follower: changes.remove(follower))
            changes.timed("remove leader", lambda target=target: changes.remove(target))
            changes.retire(follower)
            changes.retire(target)
            assert settled_with_voters(cluster, changes.voters, changes.voters)
            assert len(changes.voters) == 3
    finally:
        writer.stop()
    longest = record_stalls(changes.results())

    assert all(ms < STALL_LIMIT * 1000 for ms in longest.values()), longest
    acked = writer.acked()
    assert len(acked) > 100
    # Linearizable reads, spread over the three members left: each must see every acknowledged write.
    voters = changes.voters
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda pair: voters[pair[0] % len(voters)].client().get(pair[1].key),
                                enumerate(acked)))
    lost = [(a.key, a.value, r.status, r.text) for a, r in zip(acked, answers, strict=True)
            if r.status != 200 or r.json()["value"] != a.value]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged writes not read back, e.g. {lost[:5]}"


def test_remove_the_leader_a_new_leader_among_the_rest_serves_the_old_one_says_removed_then_replace_it(
        process_clusters):
    """Thesis §4.2.2: the removed leader keeps leading C_new until it is committed, then steps down;
    then an operator replaces it, the CKite way: start a member with --members, and add it."""
    cluster = process_clusters(3).start_all()
    leader = cluster.leader()
    assert leader.client().put("before", "removal").status == 200
    rest = [m for m in cluster if m is not leader]

    done = control("remove", leader.binding, "--admin", leader.admin_url)   # asked on the leader itself
    assert done.returncode == 0, done.stderr
    assert sorted(json.loads(done.stdout)["members"]) == sorted(m.binding for m in rest)
    new_leader = cluster.leader(among=rest, timeout=CHANGE_TIMEOUT)
    assert new_leader.client().put("after", "removal").status == 200
    wait_for(lambda: state_of(cluster, leader) == "Removed", CHANGE_TIMEOUT, "the old leader to say Removed")
    assert settled_with_voters(cluster, rest, rest)
    for member in rest:
        assert member.client().get("before").json()["value"] == "removal"
        assert member.client().get("after").json()["value"] == "removal"
    # The removed member takes no part: it never stands for election, so the others' term stays.
    term = cluster.status(new_leader)["cluster"]["term"]
    time.sleep(1.5)   # several election timeouts (300-600 ms) in which nothing may happen: not a race
    assert state_of(cluster, leader) == "Removed"
    assert cluster.status(new_leader)["cluster"]["term"] == term
    cluster.stop(leader)

    replacement = cluster.new_member()   # --members: the three it was started with, not a configuration
    cluster.start(replacement)
    done = control("add", replacement.binding, "--admin", rest[0].admin_url)
    assert done.returncode == 0, done.stderr
    assert replacement.binding in json.loads(done.stdout)["members"]
    voters = [*rest, replacement]
    wait_for(lambda: settled_with_voters(cluster, voters, voters), CHANGE_TIMEOUT, "the replacement to be a voter")
    assert replacement.client().get("after").json()["value"] == "removal"
    members = control("members", "--admin", replacement.admin_url)
    assert members.returncode == 0, members.stderr
    shown = json.loads(members.stdout)
    assert shown["member"] == replacement.binding and shown["leader"] == new_leader.binding
    assert sorted(shown["configuration"]["voters"]) == sorted(m.binding for m in voters)


def test_a_member_joining_after_compaction_catches_up_through_a_snapshot(process_clusters):
    cluster = process_clusters(3, ["--compaction-threshold", "50"]).start_all()
    leader = cluster.leader()
    written = {f"key{i:03d}": f"value{i}" for i in range(300)}
    with ThreadPoolExecutor(4) as pool:
        answers: list[HttpResult] = list(pool.map(lambda kv: leader.client().put(*kv), written.items()))
    assert all(answer.status == 200 for answer in answers)
    wait_for(lambda: (cluster.status(leader) or {}).get("log", {}).get("firstIndex", 0) > 50, CHANGE_TIMEOUT,
             "the leader to compact its log")

    new = cluster.new_member(join=True)
    cluster.start(new)
    voters = list(cluster)
    wait_for(lambda: settled_with_voters(cluster, voters, voters), CHANGE_TIMEOUT, "the new member to be a voter")
    status = cluster.status(new)
    assert status["metrics"]["snapshotsInstalled"] >= 1, status
    last_key = max(written)
    wait_for(lambda: new.client().get(last_key, local=True).status == 200, CHANGE_TIMEOUT, "the new member's state")
    local = {key: new.client().get(key, local=True) for key in written}
    assert {key: answer.json()["value"] for key, answer in local.items() if answer.status == 200} == written
    assert new.client().put("after", "join").status == 200   # it serves: forwarded to the leader
    assert new.client().get("after").json()["value"] == "join"


def test_transfer_leadership_to_a_named_member_with_the_control_command_and_the_admin_token(process_clusters):
    """Thesis §3.10: the leader brings the target up to date and sends it TimeoutNow."""
    cluster = process_clusters(3, ["--admin-token", ADMIN_TOKEN]).start_all()
    leader = cluster.leader()
    target, via = [m for m in cluster if m is not leader]
    transfer = ["transfer", "--to", target.binding, "--admin", via.admin_url]   # via forwards it to the leader

    refused = control(*transfer)
    assert refused.returncode == 1 and refused.stdout == "", refused.stdout
    assert len(refused.stderr.splitlines()) == 1 and " 401 " in refused.stderr, refused.stderr
    assert cluster.leader() is leader

    done = control(*transfer, "--token", ADMIN_TOKEN)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"leader": target.binding, "requestedTarget": target.binding}
    assert cluster.leader() is target

    not_a_voter = control("transfer", "--to", "localhost:1", "--admin", via.admin_url,
                          env={ADMIN_TOKEN_ENV: ADMIN_TOKEN})   # the token from the environment
    assert not_a_voter.returncode == 1 and not_a_voter.stdout == ""
    assert len(not_a_voter.stderr.splitlines()) == 1 and " 409 " in not_a_voter.stderr, not_a_voter.stderr
    assert cluster.leader() is target


def test_the_control_command_increments_once_per_idempotency_key_through_any_member(process_clusters):
    """``incr`` retried with the same ``--idempotency-key`` on another member gets the first
    answer and adds once; the key reused for another increment, or a value that is not an
    integer, is a one-line refusal."""
    cluster = process_clusters(3).start_all()
    cluster.leader()
    first, second, third = cluster.members

    once = control("incr", "visits", "--by", "5", "--idempotency-key", "visit-1", "--admin", first.admin_url)
    assert once.returncode == 0, once.stderr
    assert json.loads(once.stdout) == {"key": "visits", "value": "5"}
    again = control("incr", "visits", "--by", "5", "--idempotency-key", "visit-1", "--admin", second.admin_url)
    assert again.returncode == 0 and json.loads(again.stdout) == {"key": "visits", "value": "5"}, again.stderr
    plain = control("incr", "visits", "--admin", third.admin_url)
    assert plain.returncode == 0 and json.loads(plain.stdout)["value"] == "6", plain.stderr

    reused = control("incr", "visits", "--by", "2", "--idempotency-key", "visit-1", "--admin", third.admin_url)
    assert reused.returncode == 1 and reused.stdout == ""
    assert len(reused.stderr.splitlines()) == 1 and " 422 " in reused.stderr, reused.stderr
    assert "outcome: not-applied" in reused.stderr, reused.stderr
    assert first.client().put("name", "ada").status == 200
    not_a_number = control("incr", "name", "--admin", second.admin_url)
    assert not_a_number.returncode == 1 and " 409 " in not_a_number.stderr, not_a_number.stderr
    assert first.client().get("visits").json()["value"] == "6"


@pytest.mark.parametrize("args, complaint", [
    (["add"], "the following arguments are required: HOST:PORT"),
    (["remove", "nocolon"], "bad binding 'nocolon'"),
    (["transfer", "--to", "host:99999"], "bad binding"),
    (["bogus"], "invalid choice: 'bogus'"),
    (["incr", "visits", "--by", "1.5"], "argument --by: invalid int value: '1.5'"),
    (["members", "--admin", "http://127.0.0.1:1"], "Connection refused"),
])
def test_the_control_command_answers_a_mistake_with_one_line(args, complaint):
    done = control(*args)
    assert done.returncode in (1, 2) and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ckite-kvstore-control: error:") and complaint in lines[0], lines


def test_members_and_join_are_mutually_exclusive(tmp_path):
    done = subprocess.run([sys.executable, "-m", "kvstore", "--port", "9091", "--data-dir", str(tmp_path),
                           "--members", "localhost:9092", "--join", "localhost:9092"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["ckite-kvstore: error: argument --join: not allowed with argument --members "
                                        "(see --help)"]


def test_scripts_cluster_add_starts_a_member_that_joins_and_votes(tmp_path):
    base = processes.free_base_port(count=4)
    cluster = Terminal(["bash", "scripts/cluster", "--base-port", str(base), "--data-dir", str(tmp_path)], ROOT)
    fourth = None
    try:
        cluster.read_until("Ctrl-C stops all three.", timeout=60)
        fourth = Terminal(["bash", "scripts/cluster", "--add", str(base + 3), "--base-port", str(base),
                           "--data-dir", str(tmp_path)], ROOT)
        screen = fourth.read_until("Ctrl-C stops this member", timeout=90)
        voters = ", ".join(f"localhost:{port}" for port in range(base, base + 4))
        assert f"localhost:{base + 3} is a voter; voters: {voters}" in screen, screen
        answer = processes.http("GET", f"http://{processes.LOCALHOST}:{base + 1003}/get/none?local=true")
        assert answer.status == 404   # it serves the key-value routes
        for terminal in (fourth, cluster):
            terminal.type(CTRL_C)
            assert terminal.wait(timeout=30) == 0, terminal.output
    finally:
        for terminal in (fourth, cluster):
            if terminal is not None:
                terminal.close()

