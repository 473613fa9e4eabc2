"""Operator commands for a running cluster: add or remove a member, hand leadership over, and
increment a counter.

``python -m kvstore.control add localhost:9094 --admin http://localhost:10091``
``python -m kvstore.control remove localhost:9092``
``python -m kvstore.control transfer --to localhost:9093``
``python -m kvstore.control members``
``python -m kvstore.control incr visits --by 5 --idempotency-key visit-42``

Each command is one request to one member's admin routes (ckite/admin/routes.py) or, for
``incr``, its key-value route ``POST /incr/<key>`` (kvstore/http.py); any member will do, it
forwards the change to the leader. An increment is not idempotent: sent again, it adds again,
unless it carries the same ``--idempotency-key``, with which a retry through any member gets the
first answer and adds once (the way to retry an answer that says ``outcome: unknown``).

The member's JSON answer is printed as it came; a refusal, an unreachable member or a membership
change not finished within ``--timeout`` (it goes on) is one line on stderr and exit status 1, a
bad argument exit status 2. The admin token (``--token``, default ``$CKITE_ADMIN_TOKEN``) is sent as
``Authorization: Bearer ...`` when given; the routes need it only when the cluster has one.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any, NoReturn

from ckite import __version__
from ckite.bindings import parse_binding
from kvstore.cli import ADMIN_TOKEN_ENV
from kvstore.http import IDEMPOTENCY_HEADER

PROG = "ckite-kvstore-control"
DEFAULT_ADMIN = "http://localhost:10091"
#: How long a command waits; a membership change waits for the new member's catch-up meanwhile.
DEFAULT_TIMEOUT_S = 60.0


class _OneLineErrors(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message} (see --help)\n")


def _binding(text: str) -> str:
    try:
        return parse_binding(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _connection_options(p: argparse.ArgumentParser, suppress: bool) -> None:
    """``--admin``/``--token``/``--timeout``, accepted before or after the command: the copy on a
    command's parser has no default, so that it does not overwrite a value given before it."""
    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value
    p.add_argument("--admin", metavar="URL", default=default(DEFAULT_ADMIN),
                   help=f"admin console of any member (default: {DEFAULT_ADMIN})")
    p.add_argument("--token", metavar="TOKEN", default=default(None),
                   help=f"admin token, if the cluster has one (default: ${ADMIN_TOKEN_ENV})")
    p.add_argument("--timeout", metavar="SECONDS", type=float, default=default(DEFAULT_TIMEOUT_S),
                   help=f"how long to wait for the answer (default: {DEFAULT_TIMEOUT_S:g})")


def parser() -> argparse.ArgumentParser:
    p = _OneLineErrors(prog=PROG, description="Change a running kvstore cluster through any member's admin "
                                              "routes, and print the member's JSON answer.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _connection_options(p, suppress=False)
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_OneLineErrors)
    add = commands.add_parser("add", help="add a member (start it with --join, or with --members, "
                                          "and it is made a voter once it has caught up)")
    add.add_argument("binding", type=_binding, metavar="HOST:PORT", help="the new member's Raft binding")
    remove = commands.add_parser("remove", help="remove a member (the leader may remove itself: it hands over)")
    remove.add_argument("binding", type=_binding, metavar="HOST:PORT", help="the member's Raft binding")
    transfer = commands.add_parser("transfer", help="hand leadership to another voter (e.g. before a restart)")
    transfer.add_argument("--to", type=_binding, metavar="HOST:PORT",
                          help="the new leader (default: the most up-to-date voter)")
    commands.add_parser("members", help="show the leader and the configuration (voters, learners)")
    incr = commands.add_parser("incr", help="add to a key's integer value (a missing key counts as 0) and show "
                                            "the new value")
    incr.add_argument("key", help="the key")
    incr.add_argument("--by", type=int, default=1, metavar="N", help="what to add, may be negative (default: 1)")
    incr.add_argument("--idempotency-key", metavar="KEY",
                      help="name this increment: sent again with the same KEY (to any member) it adds only once")
    for command in commands.choices.values():
        _connection_options(command, suppress=True)
    return p


def request_for(args: argparse.Namespace) -> tuple[str, str]:
    """The method and path of the admin route that ``args``' command calls. A membership change
    asks the member to wait for it (``?wait=``) a second less than this command waits for the answer."""
    if args.command in ("add", "remove"):
        wait = urllib.parse.urlencode({"wait": f"{max(args.timeout - 1, 0):g}"})
        return ("POST" if args.command == "add" else "DELETE",
                "/members/" + urllib.parse.quote(args.binding, safe=":") + "?" + wait)
    if args.command == "transfer":
        query = "?" + urllib.parse.urlencode({"to": args.to}, safe=":") if args.to else ""
        return "POST", "/transferleadership" + query
    if args.command == "incr":
        return "POST", "/incr/" + urllib.parse.quote(args.key, safe="") + "?" + urllib.parse.urlencode({"by": args.by})
    return "GET", "/status"


def _summary(status: dict[str, Any]) -> dict[str, Any]:
    cluster = status.get("cluster", {})
    return {"member": status.get("id"), "state": cluster.get("state"), "term": cluster.get("term"),
            "leader": cluster.get("leader"), "configuration": cluster.get("configuration")}


def run(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    method, path = request_for(args)
    url = args.admin.rstrip("/") + path
    token = args.token or os.environ.get(ADMIN_TOKEN_ENV)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if getattr(args, "idempotency_key", None) is not None:
        headers[IDEMPOTENCY_HEADER] = args.idempotency_key
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        with error:
            print(f"{PROG}: error: {method} {url}: {error.code} {_error_text(error.read())}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:   # refused, timed out, or a malformed --admin URL
        reason = getattr(error, "reason", error)
        print(f"{PROG}: error: {method} {url}: {reason}", file=sys.stderr)
        return 1
    try:
        answer = json.loads(body)
    except ValueError:
        print(f"{PROG}: error: {method} {url}: the answer is not JSON: {body[:200]!r}", file=sys.stderr)
        return 1
    print(json.dumps(_summary(answer) if args.command == "members" else answer, indent=2))
    if args.command in ("add", "remove") and answer.get("state") != "done":
        print(f"{PROG}: the change is not finished ({answer.get('state')}); it goes on (removing a member being "
              "added cancels it)", file=sys.stderr)
        return 1
    return 0


def _error_text(body: bytes) -> str:
    """The member's ``{"error": ...}`` message (with the leader and the write's outcome when it
    names them), else the raw body."""
    try:
        answer = json.loads(body)
        message = str(answer["error"])
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", errors="replace").strip()[:200]
    details = [f"{name}: {answer[name]}" for name in ("leader", "outcome") if answer.get(name)]
    return f"{message} ({'; '.join(details)})" if details else message


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
