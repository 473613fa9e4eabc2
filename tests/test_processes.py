"""End to end over real processes: CKite's README walk-through with the kvstore CLI and its
curl routes, a leader killed with SIGKILL, a restart that catches up, clean stops, the CLI's
errors, and ``scripts/cluster`` in a terminal stopped with Ctrl-C."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import processes
from tests.processes import LOCALHOST, Member, free_base_port, http
from tests.terminal import CTRL_C, Terminal
from tests.waiting import wait_for

pytestmark = pytest.mark.processes
process_clusters = processes.process_clusters   # the fixture, made visible to this module's tests

ROOT = Path(__file__).resolve().parent.parent
#: Elections take 300-600 ms here; a failover, or a restarted member's catch-up, gets ten times that.
FAILOVER_TIMEOUT = 6.0


def local_value(member: Member, key: str) -> str | None:
    """``key`` as this member's own state machine has it (``?local=true``), None while absent."""
    answer = member.client().get(key, local=True)
    return answer.json()["value"] if answer.status == 200 else None


def test_readme_walk_through_put_on_the_leader_get_on_member_2_status_on_member_3(process_clusters):
    cluster = process_clusters(3).start_all()
    leader = cluster.leader()

    put = leader.client().put("key1", "value1")
    assert (put.status, put.json()) == (200, {"key": "key1", "value": "value1"})

    got = cluster[1].client().get("key1")
    assert (got.status, got.json()) == (200, {"key": "key1", "value": "value1"})

    # CKite's shape: cluster {term, state, stateInfo}, log {length, commitIndex, lastLog}
    # A follower learns that its last entry committed with the leader's next AppendEntries.
    def status_showing_the_put() -> dict | None:
        status = cluster[2].client().status().json()
        log = status["log"]
        shown = log["lastLog"]["command"] == {"key": "key1", "value": "value1"}
        return status if shown and log["commitIndex"] == log["lastLog"]["index"] else None
    status = wait_for(status_showing_the_put, 5, "member 3's status to show the put, committed, as its last entry")
    assert status["id"] == cluster[2].binding
    assert status["cluster"]["term"] >= 1
    assert status["cluster"]["leader"] == leader.binding
    assert status["log"]["length"] >= 1
    assert status["log"]["lastLog"]["term"] == status["cluster"]["term"]
    state_info = status["cluster"]["stateInfo"]
    if cluster[2] is leader:
        assert status["cluster"]["state"] == "Leader"
        assert set(state_info["lastHeartbeatsACKs"]) == {cluster[0].binding, cluster[1].binding}
        assert "leaderUptime" in state_info
    else:
        assert status["cluster"]["state"] == "Follower"
        assert state_info["following"] == leader.binding


def test_a_new_leader_serves_writes_after_kill_9_and_the_restarted_member_catches_up(process_clusters):
    cluster = process_clusters(3).start_all()
    old = cluster.leader()
    assert old.client().put("before", "crash").status == 200

    killed_at = time.monotonic()
    assert cluster.kill(old) == -signal.SIGKILL
    survivors = [m for m in cluster if m is not old]
    new = cluster.leader(among=survivors, timeout=FAILOVER_TIMEOUT)
    assert new is not old
    follower = next(m for m in survivors if m is not new)
    written = wait_for(lambda: follower.client().put("after", "crash").status == 200, FAILOVER_TIMEOUT,
                       "a write through the surviving follower")
    assert written and time.monotonic() - killed_at < FAILOVER_TIMEOUT

    cluster.start(old)   # the same data directory: its log survived the SIGKILL
    for key, value in (("before", "crash"), ("after", "crash")):
        wait_for(lambda key=key, value=value: local_value(old, key) == value, FAILOVER_TIMEOUT,
                 f"the restarted member to catch up with {key}")
    assert cluster.leader() is new   # it rejoined as a follower; no election was needed


def test_a_cluster_named_by_ip_without_host_flags_fails_over_like_any_other(process_clusters):
    """``--members 127.0.0.1:...`` and no ``--host``: each member names itself as its peers name it,
    so the configuration the first leader writes names every member as it knows itself."""
    cluster = process_clusters(3, pass_host=False).start_all()
    for member in cluster:
        assert cluster.status(member)["id"] == member.binding == f"127.0.0.1:{member.port}"
    old = cluster.leader()
    assert old.client().put("before", "failover").status == 200
    cluster.kill(old)
    survivors = [m for m in cluster if m is not old]
    new = cluster.leader(among=survivors, timeout=FAILOVER_TIMEOUT)
    assert new is not old
    assert new.client().put("after", "failover").status == 200
    assert all("own id" not in member.log_tail(200) for member in cluster)


def test_sigterm_stops_every_member_cleanly(process_clusters):
    cluster = process_clusters(3).start_all()
    leader = cluster.leader()
    assert leader.client().put("key1", "value1").status == 200
    followers = [m for m in cluster if m is not leader]
    for member in [*followers, leader]:   # the leader last: it still has a follower to lose
        assert cluster.stop(member) == 0, member.log_tail()
        assert f"{member.binding} stopped" in member.log_tail(3)


@pytest.mark.parametrize("flags, complaint", [
    (["--port", "9091"], "the following arguments are required: --data-dir"),
    (["--port", "http", "--data-dir", "d"], "argument --port: 'http' is not a port"),
    (["--port", "9091", "--data-dir", "d", "--bogus"], "unrecognized arguments: --bogus"),
    (["--port", "9091", "--data-dir", "d", "--heartbeat-interval", "-5"], "argument --heartbeat-interval"),
    (["--port", "9091", "--data-dir", "d", "--members", "nocolon"], "nocolon"),
])
def test_bad_flags_give_a_one_line_error_and_exit_status_2(tmp_path, flags, complaint):
    done = subprocess.run([sys.executable, "-m", "kvstore", *flags], cwd=tmp_path, capture_output=True, text=True,
                          timeout=30, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ckite-kvstore: error:") and complaint in lines[0], done.stderr


def test_scripts_cluster_in_a_terminal_prints_its_urls_and_stops_every_member_on_ctrl_c(tmp_path):
    base = free_base_port(count=3)
    terminal = Terminal(["bash", "scripts/cluster", "--base-port", str(base), "--data-dir", str(tmp_path)], ROOT)
    try:
        screen = terminal.read_until("Ctrl-C stops all three.", timeout=60)
        started = re.findall(r"member localhost:(\d+)\s+pid (\d+)\s+console (http://\S+)/", screen)
        assert [int(port) for port, _, _ in started] == [base, base + 1, base + 2], screen
        assert f"Console: http://localhost:{base + 1000}/" in screen
        for port, _, console in started:
            assert console == f"http://localhost:{int(port) + 1000}"
            status = http("GET", f"http://{LOCALHOST}:{int(port) + 1000}/status").json()
            assert status["id"] == f"localhost:{port}"

        terminal.type(CTRL_C)
        assert terminal.wait(timeout=30) == 0, terminal.output
        assert "stopped; data kept in" in terminal.output
        for port, pid, _ in started:
            wait_for(lambda pid=pid: not _alive(int(pid)), 5, f"member {port} (pid {pid}) to be gone")
            log = (tmp_path / f"member-{port}.log").read_text()
            # the terminal's SIGINT reaches the members too, the script's SIGTERM may come first: both are clean
            assert re.search(rf"localhost:{port} stopping \(SIG(INT|TERM)\)", log), log
            assert log.rstrip().endswith(f"localhost:{port} stopped"), log
        assert not _processes_mentioning(str(tmp_path))
    finally:
        terminal.close()


def test_scripts_cluster_refuses_a_taken_port_rather_than_report_another_cluster_as_its_own(tmp_path):
    base = free_base_port(count=3)
    with socket.create_server((LOCALHOST, base + 1001)):   # member two's console port
        done = subprocess.run(["bash", "scripts/cluster", "--base-port", str(base), "--data-dir", str(tmp_path)],
                              cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"port {base + 1001} is in use" in done.stderr
    assert list(tmp_path.iterdir()) == []   # no member was started


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of this machine's processes that contain ``text`` (here: a data directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:   # not a process, or one that just exited
            continue
        if text in command:
            found.append(f"{entry.name}: {command}")
    return found
