"""How long a follower that missed N entries takes to catch up (issue: log compaction).

Three members in this process over real Thrift on loopback, SQLite data dirs: stop one
follower, write N entries through the leader, restart the follower (with its data dir, then
with an empty one) and time until it has applied the leader's commit index.

    python -m benchmarks.catchup --entries 100000 [--threshold 10000]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from ckite import CKite, CKiteBuilder
from ckite.errors import CKiteError
from kvstore.store import KVStore, Put

from tests.netutil import free_port
from tests.waiting import wait_for


def build(binding: str, bindings: list[str], data_dir: Path, threshold: int) -> CKite:
    return (CKiteBuilder().with_local_binding(binding).with_members_bindings([b for b in bindings if b != binding])
            .with_min_election_timeout(300).with_max_election_timeout(600).with_heartbeats_interval(50)
            .with_data_dir(data_dir).with_compaction_threshold(threshold).with_state_machine(KVStore())
            .without_admin().build())


def catch_up_seconds(entries: int, threshold: int, wipe: bool, work: Path) -> dict:
    bindings = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    dirs = {b: work / b.replace(":", "_") for b in bindings}
    members = {b: build(b, bindings, dirs[b], threshold) for b in bindings}
    for member in members.values():
        member.start()
    try:
        leader = wait_for(lambda: next((m for m in members.values() if m.status()["state"] == "Leader"), None),
                          10, "a leader")
        lagging = next(b for b in bindings if b != leader.id)
        members.pop(lagging).stop()
        for start in range(0, entries, 2000):
            batch = range(start, min(start + 2000, entries))
            while True:
                try:
                    for future in [leader.write_async(Put(f"key{i % 10000}", f"value{i}")) for i in batch]:
                        future.result(timeout=30)
                    break
                except CKiteError:   # leadership moved under load: write the batch again (puts are idempotent)
                    leader = wait_for(lambda: next((m for m in members.values()
                                                    if m.status()["state"] == "Leader"), None), 10, "a leader")
        target = leader.status()["log"]["commitIndex"]
        if wipe:
            for path in dirs[lagging].iterdir():
                path.unlink()
        started = time.monotonic()
        restarted = members[lagging] = build(lagging, bindings, dirs[lagging], threshold)
        restarted.start()
        wait_for(lambda: restarted.status()["log"]["lastApplied"] >= target, 120, "the catch-up")
        elapsed = time.monotonic() - started
        status = restarted.status()
        return {"entries_missed": entries, "wiped": wipe, "seconds": round(elapsed, 3),
                "snapshots_installed": status["metrics"]["snapshotsInstalled"],
                "leader_snapshot_bytes": (leader.status()["log"]["snapshot"] or {}).get("bytes")}
    finally:
        for member in members.values():
            member.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--threshold", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        for wipe in (False, True):
            result = catch_up_seconds(args.entries, args.threshold, wipe, Path(work) / f"wipe-{wipe}")
            print(json.dumps(result))


if __name__ == "__main__":
    main()
