"""JSON errors for every HTTP route of the admin server (ckite's and the application's).

One place decides which HTTP status a :mod:`ckite.errors` exception deserves, so that a
route only raises: "no leader / no quorum in time" is 503 (with the leader when known, so a
client can go there, and for a write whether it certainly did not apply or may have), an
idempotency key reused for another request is 422, a membership change refused now is 409, and a failure of the state
machine or of the codec is the server's (500): the routes validate client input themselves
and answer 400 before anything reaches ckite. Werkzeug's own errors (404 unknown route, 405) are
turned into the same ``{"error": ...}`` shape instead of HTML pages.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from ckite.errors import (
    CKiteError,
    CommandError,
    EncodingError,
    IdempotencyKeyReusedError,
    LeaderTimeoutError,
    LostLeadershipError,
    MembershipChangeError,
    NotLeaderError,
    ReadTimeoutError,
    RpcError,
    SessionExpiredError,
    StoppedError,
    UnknownCommandError,
    WriteInterruptedError,
    WriteTimeoutError,
)

logger = logging.getLogger(__name__)

#: Most specific first: the first class the exception is an instance of decides.
_STATUS_BY_ERROR: tuple[tuple[type[CKiteError], int], ...] = (
    (IdempotencyKeyReusedError, 422),   # the client's mistake: another request under its key
    (NotLeaderError, 503),
    (LeaderTimeoutError, 503),
    (WriteTimeoutError, 503),
    (ReadTimeoutError, 503),
    (LostLeadershipError, 503),
    (StoppedError, 503),
    (SessionExpiredError, 503),
    (WriteInterruptedError, 503),
    (RpcError, 503),
    (MembershipChangeError, 409),
    (EncodingError, 500),   # the application built a command msgpack cannot carry: not the client's fault
    (UnknownCommandError, 500),
    (CommandError, 500),
)

#: Werkzeug's default descriptions are paragraphs written for browsers; these say the same briefly.
_SHORT_MESSAGES = {404: "not found: no such route", 405: "method not allowed on this route"}


def json_error(status: int, message: str, **extra: Any) -> tuple[Response, int]:
    """A ``{"error": message, ...extra}`` response with ``status``, for a route to return."""
    body = {"error": message, **extra}
    return jsonify(body), status


def status_for(error: CKiteError) -> int:
    """The HTTP status that tells a client what to do about ``error``."""
    for error_type, status in _STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return status
    return 500


def install_error_handlers(app: Flask, leader_of: Callable[[], str | None],
                           admin_url_of: Callable[[str], str]) -> None:
    """Make every route of ``app`` answer errors as JSON.

    ``leader_of`` gives the leader this member believes in (used when the exception does not
    name one); ``admin_url_of`` turns a member's binding into its admin base URL.
    """

    def ckite_error(error: CKiteError) -> tuple[Response, int]:
        status = status_for(error)
        extra: dict[str, Any] = {"type": type(error).__name__}
        if status == 503:
            leader = getattr(error, "leader", None) or leader_of()
            extra["leader"] = leader
            extra["leaderAdmin"] = admin_url_of(leader) if leader else None
        if error.outcome is not None:   # a write: did it apply? ("not-applied": retry anything; "unknown": only
            extra["outcome"] = error.outcome   # under the same Idempotency-Key)
        if status >= 500 and status != 503:
            logger.warning("request failed: %s: %s", type(error).__name__, error)
        return json_error(status, str(error), **extra)

    def http_error(error: HTTPException) -> tuple[Response, int]:
        status = error.code or 500
        message = _SHORT_MESSAGES.get(status, error.name)
        if error.description and error.description != type(error).description:   # the route's own words
            message = error.description
        return json_error(status, message)

    def unexpected_error(error: Exception) -> tuple[Response, int]:
        logger.exception("admin route failed")
        return json_error(500, f"internal error: {type(error).__name__}: {error}")

    app.register_error_handler(CKiteError, ckite_error)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, unexpected_error)
