"""The whole cluster's status, gathered server-side for the console (``/cluster/status``).

A browser may not fetch other members' admin ports (another origin), so this member asks
each of them for its ``/status`` and hands the console one document. Requests run in
parallel on a small pool with a short timeout, so one dead member costs the page one
timeout, not one per member; its entry then carries the error instead of a status.

Members' admin servers are found by convention (Raft port + 1000, as in CKite) unless the
caller supplies another mapping.
"""
from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

logger = logging.getLogger(__name__)

#: CKite's convention: the admin console listens on the Raft port + 1000.
ADMIN_PORT_OFFSET = 1000

#: How long the console waits for one member's /status (a member answers it from memory, in
#: milliseconds; one that takes longer is as good as unreachable for a page refreshed every second).
FETCH_TIMEOUT = 0.5

#: Beyond FETCH_TIMEOUT, how long /cluster/status waits for a fetch still queued or connecting.
ANSWER_MARGIN = 0.2

#: Requests to other members at once: every member of a cluster of this size in parallel.
FETCH_THREADS = 8


def admin_url_by_convention(binding: str, offset: int = ADMIN_PORT_OFFSET) -> str:
    """``host:9092`` -> ``http://host:10092``: where a member's admin console is by default."""
    host, _, port = binding.rpartition(":")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"   # a bare IPv6 address
    return f"http://{host}:{int(port) + offset}"


def fetch_json(url: str, timeout: float) -> Any:
    """GET ``url`` and parse its JSON body; raises OSError/ValueError with the reason."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:   # an answer, but not a status document
        raise OSError(f"HTTP {exc.code} from {url}") from None


class ClusterStatusFetcher:
    """Collects every member's rendered status: this member's directly, the others' over HTTP."""

    def __init__(self, member_id: str, members: Callable[[], frozenset[str]],
                 local_status: Callable[[], dict[str, Any]],
                 admin_url_of: Callable[[str], str] = admin_url_by_convention,
                 fetch: Callable[[str, float], Any] = fetch_json, timeout: float = FETCH_TIMEOUT) -> None:
        self.member_id = member_id
        self._members = members
        self._local_status = local_status
        self.admin_url_of = admin_url_of
        self._fetch = fetch
        self._timeout = timeout
        tag = member_id.rsplit(":", 1)[-1]
        self._pool = ThreadPoolExecutor(max_workers=FETCH_THREADS, thread_name_prefix=f"ckite-{tag}-admin-fetch")

    def cluster_status(self) -> dict[str, Any]:
        """``{"self", "members": [{"id", "adminUrl", "reachable", "status" | "error", "fetchMs"}...], "leaders"}``:
        every other member is asked at once, so the answer takes at most one FETCH_TIMEOUT."""
        members = sorted(self._members() | {self.member_id})
        started = time.monotonic()
        futures = {member: self._pool.submit(self._one, member) for member in members if member != self.member_id}
        deadline = started + self._timeout + ANSWER_MARGIN   # however busy the pool is
        entries = []
        for member in members:
            if member == self.member_id:
                entries.append({"id": member, "adminUrl": self.admin_url_of(member), "self": True,
                                "reachable": True, "status": self._local_status(), "fetchMs": 0})
                continue
            try:
                entries.append(futures[member].result(max(deadline - time.monotonic(), 0)))
            except FutureTimeout:
                entries.append({"id": member, "adminUrl": self.admin_url_of(member), "self": False,
                                "reachable": False, "error": f"no answer within {self._timeout:g}s",
                                "fetchMs": round((time.monotonic() - started) * 1000)})
        return {"self": self.member_id, "members": entries, "leaders": _leaders(entries),
                "fetchedAtMs": int(time.time() * 1000)}

    def _one(self, member: str) -> dict[str, Any]:
        url = self.admin_url_of(member)
        started = time.monotonic()
        entry: dict[str, Any] = {"id": member, "adminUrl": url, "self": False, "reachable": True}
        try:
            entry["status"] = self._fetch(f"{url}/status", self._timeout)
        except (OSError, ValueError) as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
            entry["reachable"] = False
        entry["fetchMs"] = round((time.monotonic() - started) * 1000)
        return entry

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _leaders(entries: list[dict[str, Any]]) -> dict[str, int]:
    """Which leader each reachable member names, with how many name it (a split shows at once)."""
    counts: dict[str, int] = {}
    for entry in entries:
        leader = (entry.get("status") or {}).get("cluster", {}).get("leader")
        if leader:
            counts[leader] = counts.get(leader, 0) + 1
    return counts
