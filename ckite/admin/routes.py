"""ckite's own HTTP routes: status, cluster view, metrics, membership and the console page.

They are a Blueprint so that the application's routes (the kvstore's ``/kv/...``) can share
the same server; the application only adds a blueprint of its own.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from prometheus_client.exposition import choose_encoder

from ckite.admin.auth import mutating
from ckite.admin.cluster import ClusterStatusFetcher
from ckite.admin.errors import json_error
from ckite.admin.status_view import render_status
from ckite.bindings import parse_binding
from ckite.consensus.reconfiguration import ChangeState
from ckite.errors import CKiteError, LeaderTimeoutError

if TYPE_CHECKING:
    from ckite.api import CKite

logger = logging.getLogger(__name__)

#: How often the console page polls /cluster/status.
CONSOLE_POLL_MS = 1000

#: How long a membership route waits for the change before it answers 202 (``?wait=`` overrides).
DEFAULT_CHANGE_WAIT = 1.0
MAX_CHANGE_WAIT = 3600.0

#: Routes an application may add whose presence the console looks for (its put/get form).
KEY_VALUE_ROUTE_PREFIX = "/kv/"


def admin_blueprint(ckite: CKite, fetcher: ClusterStatusFetcher, *,
                    token_required: bool = False) -> Blueprint:
    """The Blueprint serving ``ckite``'s console; ``token_required`` tells the console page to
    show its admin token field."""
    bp = Blueprint("ckite_admin", __name__, static_folder="static", static_url_path="/static")

    @bp.get("/")
    def console() -> Response:
        return bp.send_static_file("console.html")

    @bp.get("/console/config")
    def console_config() -> Response:
        has_kv = any(rule.rule.startswith(KEY_VALUE_ROUTE_PREFIX) for rule in current_app.url_map.iter_rules())
        return jsonify({"member": ckite.id, "keyValueRoutes": has_kv, "pollMs": CONSOLE_POLL_MS,
                        "tokenRequired": token_required})

    @bp.get("/status")
    def status() -> Response:
        return jsonify(render_status(ckite.status().to_json()))

    @bp.get("/cluster/status")
    def cluster_status() -> Response:
        return jsonify(fetcher.cluster_status())

    @bp.get("/metrics")
    def metrics() -> ResponseReturnValue:
        """The member's metrics registry (``CKite.metrics_registry``: the application's, if it gave
        one), in the format the scraper asks for (prometheus_client's own negotiation: the text
        format, ``generate_latest``, unless OpenMetrics is accepted). 404 for a member whose
        metrics are off (built without the console, its console attached afterwards)."""
        try:
            registry = ckite.metrics_registry
        except CKiteError as exc:
            return json_error(404, str(exc))
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return Response(encode(registry), content_type=content_type)

    @bp.get("/changecluster/<bindings>")
    @mutating
    def change_cluster(bindings: str) -> ResponseReturnValue:
        """CKite's route: the new configuration is the comma list of ALL members' bindings."""
        wanted = _parse_bindings(bindings.split(","))
        if isinstance(wanted, tuple):
            return wanted
        current = set(ckite.members)
        return _change(ckite, add=wanted - current, remove=current - wanted)

    @bp.post("/members/<binding>")
    def add_member(binding: str) -> ResponseReturnValue:
        wanted = _parse_bindings([binding])
        return wanted if isinstance(wanted, tuple) else _change(ckite, add=wanted)

    @bp.delete("/members/<binding>")
    def remove_member(binding: str) -> ResponseReturnValue:
        """Remove a member, or cancel its addition while it is still catching up."""
        wanted = _parse_bindings([binding])
        return wanted if isinstance(wanted, tuple) else _change(ckite, remove=wanted)

    @bp.post("/transferleadership")
    @mutating
    def transfer_leadership() -> ResponseReturnValue:
        """Hand leadership over (``?to=host:port``, default: the most up-to-date voter)."""
        target = request.args.get("to") or None
        if target is not None:
            parsed = _parse_bindings([target])
            if isinstance(parsed, tuple):
                return parsed
        ckite.transfer_leadership(target)
        try:   # this member may not have heard from the new leader yet: wait, so that the answer names it
            ckite.is_leader()
        except LeaderTimeoutError:
            pass   # the transfer happened; "leader" is null until this member hears from the new one
        return jsonify({"leader": ckite.leader, "requestedTarget": target})

    return bp


def _parse_bindings(raw: Sequence[str]) -> set[str] | tuple[Response, int]:
    """The validated set of bindings, or a 400 response naming the bad one."""
    try:
        wanted = {parse_binding(binding) for binding in raw if binding.strip()}
    except ValueError as exc:
        return json_error(400, str(exc))
    if not wanted:
        return json_error(400, "no member bindings given: expected host:port[,host:port...]")
    return wanted


def _change(ckite: CKite, add: Iterable[str] = (), remove: Iterable[str] = ()) -> ResponseReturnValue:
    """Start the change and wait a little (``?wait=SECONDS``): 200 once it is done, 202 with its state
    while it goes on (a member being added may not even be started yet)."""
    wait = _wait_seconds()
    if isinstance(wait, tuple):
        return wait
    logger.info("membership change requested: add %s, remove %s", sorted(add) or "-", sorted(remove) or "-")
    change = ckite.change_membership(add, remove, wait=wait)
    return jsonify(change.to_json()), 200 if change.state is ChangeState.DONE else 202


def _wait_seconds() -> float | tuple[Response, int]:
    raw = request.args.get("wait")
    if raw is None:
        return DEFAULT_CHANGE_WAIT
    try:
        wait = float(raw)
    except ValueError:
        wait = -1.0
    if not 0 <= wait <= MAX_CHANGE_WAIT:
        return json_error(400, f"bad wait {raw!r}: expected seconds from 0 to {MAX_CHANGE_WAIT:g}")
    return wait
