"""CKite's README walk-through, step by step in one terminal, as a person follows it: three members
started in the background, a put, a get on another member, a status, the change to four members
asked for *before* member four exists (it answers at once, 202: in progress), then member four
started with the others as its members; within seconds it is a voter and holds the key."""
from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

from tests.processes import free_base_port, http
from tests.terminal import Terminal
from tests.waiting import wait_for

pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parent.parent
#: A step that talks to a running member answers within this (an election takes 1-1.5 s here).
STEP_TIMEOUT = 15.0
#: How soon /changecluster answers while member four does not exist yet (its default wait is 1 s).
CHANGE_ANSWER_WITHIN = 3.0
#: "It votes within seconds": from its start to its being a voter in every member's configuration.
JOINS_WITHIN = 10.0


def test_ckites_walk_through_in_one_terminal_change_first_then_start_member_four(tmp_path):
    base = free_base_port(count=4)
    ports = [base + i for i in range(4)]
    binding = [f"localhost:{port}" for port in ports]
    console = [f"http://localhost:{port + 1000}" for port in ports]

    def member(n: int, peers: list[int]) -> str:
        members = ",".join(binding[p] for p in peers)
        return (f"{sys.executable} -m kvstore --port {ports[n]} --members {members} "
                f"--data-dir {tmp_path}/member{n + 1} > {tmp_path}/member{n + 1}.log 2>&1 & pids=\"$pids $!\"\n")

    terminal = Terminal(["bash", "--norc", "--noprofile"], ROOT)
    try:
        # No job control (the members stay in the shell's process group, which close() kills), and no
        # bracketed-paste escapes around each command's output.
        terminal.type(b"set +m; PS1='$ '; bind 'set enable-bracketed-paste off'\n")
        for n, peers in ((0, [1, 2]), (1, [0, 2]), (2, [1, 0])):   # CKite's order of --members
            terminal.type(member(n, peers).encode())
        wait_for(lambda: any(_state(url) == "Leader" for url in console[:3]), STEP_TIMEOUT, "a leader")

        terminal.type(f"curl -s {console[0]}/put/key1/value1\n".encode())
        terminal.read_until('"value": "value1"', STEP_TIMEOUT)
        terminal.type(f"curl -s {console[1]}/get/key1; echo got-it\n".encode())
        assert '"value": "value1"' in _answer(terminal.read_until("\ngot-it", STEP_TIMEOUT), "got-it")
        terminal.type(f"curl -s {console[2]}/status; echo status-done\n".encode())
        assert '"state": "' in _answer(terminal.read_until("\nstatus-done", STEP_TIMEOUT), "status-done")

        asked = time.monotonic()
        terminal.type(f"curl -s -w ' HTTP %{{http_code}}\\n' {console[0]}/changecluster/{','.join(binding)}"
                      f"; echo change-done\n".encode())
        answer = _answer(terminal.read_until("\nchange-done", STEP_TIMEOUT), "change-done")
        assert time.monotonic() - asked < CHANGE_ANSWER_WITHIN, answer
        assert "HTTP 202" in answer and '"state": "catching-up"' in answer and f'"{binding[3]}"' in answer, answer

        started = time.monotonic()
        terminal.type(member(3, [1, 0, 2]).encode())
        wait_for(lambda: all(binding[3] in (_configuration(url) or {}).get("voters", ()) for url in console),
                 JOINS_WITHIN, "member four to be a voter in every member's configuration")
        assert time.monotonic() - started < JOINS_WITHIN
        assert http("GET", f"{console[3]}/get/key1?local=true").json()["value"] == "value1"
        assert http("GET", f"{console[0]}/status").json()["cluster"]["membershipChange"] is None
        terminal.type(f"curl -s {console[3]}/put/key2/value2\n".encode())   # forwarded to the leader
        terminal.read_until('"value": "value2"', STEP_TIMEOUT)
        for url in console:
            wait_for(lambda url=url: http("GET", f"{url}/get/key2?local=true").status == 200, STEP_TIMEOUT,
                     f"{url} to apply the write made through member four")

        terminal.type(b"kill $pids; wait; echo all-stopped\n")
        terminal.read_until("\nall-stopped", STEP_TIMEOUT)
        for n in range(4):
            assert re.search(rf"localhost:{ports[n]} stopped\s*$", (tmp_path / f"member{n + 1}.log").read_text())
    finally:
        terminal.close()


def _answer(screen: str, marker: str) -> str:
    """What the last command printed before its ``echo marker``."""
    return screen.rsplit(f"\n{marker}", 1)[0].rsplit(f"; echo {marker}", 1)[-1]


def _status(url: str) -> dict | None:
    try:
        answer = http("GET", f"{url}/status", timeout=1.0)
    except OSError:
        return None
    return answer.json() if answer.status == 200 else None


def _state(url: str) -> str | None:
    return (_status(url) or {}).get("cluster", {}).get("state")


def _configuration(url: str) -> dict | None:
    return (_status(url) or {}).get("cluster", {}).get("configuration")

