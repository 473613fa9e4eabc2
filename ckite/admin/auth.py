"""Who may change the cluster through the admin server: a bearer token on the mutating routes.

A route *mutates* when its method is not GET/HEAD/OPTIONS (POST /members, PUT and DELETE
/kv/..., POST /cas/...) or when it is marked with :func:`mutating` (CKite's GET routes that
write: /put, /cas, /changecluster). Every other route only reads (/status, /cluster/status,
/metrics, /get, GET /kv, the console) and stays open: the admin server binds to 127.0.0.1 by
default, and what it shows is what any member's log already holds.

With a token (``CKiteBuilder.with_admin_token`` / ``--admin-token`` / ``CKITE_ADMIN_TOKEN``), a
mutating request without ``Authorization: Bearer <token>`` is answered 401, with another token
403, before the route runs, so nothing changes. Tokens are compared in constant time.

Cross-site requests: a browser that visits a hostile page can be made to send a GET to
``http://127.0.0.1:10091/put/k/v`` (an ``<img>`` tag is enough). Browsers mark such requests with
``Sec-Fetch-Site: cross-site``; a mutating request so marked is refused (403) with or without a
token. A browser too old to send that header is protected only by the token, which a hostile
page cannot add (no cookie carries it, and the server grants no CORS). See docs/security.md.
"""
from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response, request

from ckite.admin.errors import json_error

logger = logging.getLogger(__name__)

#: Methods that do not change anything unless the route is marked :func:`mutating`.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_MARK = "ckite_mutating"
View = TypeVar("View", bound=Callable[..., Any])


def mutating(view: View) -> View:
    """Mark a GET route that changes state: it then needs the admin token like a POST, PUT or DELETE."""
    setattr(view, _MARK, True)
    return view


def checked_token(token: str) -> str:
    """``token`` if it can travel in an ``Authorization`` header (printable ASCII, no spaces); else ValueError."""
    if not isinstance(token, str) or not token or not all("!" <= char <= "~" for char in token):
        raise ValueError("the admin token must be a non-empty string of printable ASCII characters without spaces")
    return token


def install_access_control(app: Flask, token: str | None) -> None:
    """Check every request to ``app`` that reaches a mutating route (see the module's doc)."""
    expected = None if token is None else checked_token(token).encode("ascii")

    @app.before_request
    def check_access() -> tuple[Response, int] | None:
        if request.url_rule is None:   # no such route, or not with this method: 404/405 follow, nothing runs
            return None
        view = app.view_functions.get(request.endpoint or "")
        if request.method in SAFE_METHODS and not getattr(view, _MARK, False):
            return None
        if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
            return _refuse(403, "cross-site request refused: this route changes the cluster")
        if expected is None:
            return None
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            response, status = _refuse(401, "this route changes the cluster: send Authorization: Bearer <admin token>")
            response.headers["WWW-Authenticate"] = 'Bearer realm="ckite admin"'
            return response, status
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected):
            return _refuse(403, "wrong admin token")
        return None


def _refuse(status: int, message: str) -> tuple[Response, int]:
    logger.warning("refused %s %s from %s: %s", request.method, request.path, request.remote_addr, message)
    return json_error(status, message)
