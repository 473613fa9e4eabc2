"""``python -m tests.jepsen.member --route REAL=PROXY ... -- <kvstore arguments>``: one kvstore
member whose outgoing connections to ``REAL`` (a peer's host:port) dial ``PROXY`` instead.

This is how the proxy network (``proxy.py``) gets between members without changing their ids:
a member still knows its peers by their real bindings — those ids travel in Raft messages and
configuration entries, so every member must use the same ones — but its bytes to each peer pass
through the proxy of that ordered pair. Only ``socket.connect`` is redirected; everything else,
including what the member listens on, is the unchanged kvstore.
"""
from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence
from typing import Any

from kvstore.cli import run


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def _route(text: str) -> tuple[tuple[str, int], tuple[str, int]]:
    real, _, proxy = text.partition("=")
    return _address(real), _address(proxy)


def install_routes(routes: dict[tuple[str, int], tuple[str, int]]) -> None:
    """Make every socket of this process dial ``routes[address]`` instead of ``address``."""
    original_connect, original_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def routed(address: Any) -> Any:
        if isinstance(address, tuple) and len(address) >= 2:
            return routes.get((address[0], address[1]), address)
        return address

    def connect(self: socket.socket, address: Any) -> None:
        original_connect(self, routed(address))

    def connect_ex(self: socket.socket, address: Any) -> int:
        return original_connect_ex(self, routed(address))

    socket.socket.connect = connect        # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    split = args.index("--") if "--" in args else len(args)
    own = argparse.ArgumentParser(prog="tests.jepsen.member")
    own.add_argument("--route", type=_route, action="append", default=[], metavar="REAL=PROXY")
    install_routes(dict(own.parse_args(args[:split]).route))
    return run(args[split + 1:])


if __name__ == "__main__":
    sys.exit(main())
