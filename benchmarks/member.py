"""One cluster member in its own process, driven by the parent over JSON lines.

    python -m benchmarks.member --system ckite --binding 127.0.0.1:P --peers A,B --data-dir DIR

The parent writes one request per line on stdin and reads one reply per line on stdout:

    {"op": "state"}                                    -> {"ok": true, "leader": bool, "term": int}
    {"op": "run", "workload": W, "args": {...}}         -> {"ok": true, "result": {...}}
    {"op": "stop"}                                     -> {"ok": true}, then the process exits

``W`` is ``sequential``, ``window``, ``writers``, ``readers`` or ``fill`` (``benchmarks.load``); a failed request
answers ``{"ok": false, "error": "..."}``. The first line the member prints is
``{"event": "started", "pid": N}`` (or ``"failed"``). The libraries' own output goes to stderr,
which the parent sends to a log file: file descriptor 1 is moved there so that nothing a
library prints can corrupt the protocol. End of stdin (the parent died) stops the member.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any, TextIO

from benchmarks import load, systems


def _protocol_stream() -> TextIO:
    """Keep the real stdout for the protocol and point fd 1 (and sys.stdout) at stderr."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return protocol


def _run(system: Any, workload: str, args: dict[str, Any]) -> dict[str, Any]:
    if workload == "sequential":
        return load.sequential(system, **args)
    if workload == "window":
        return load.window(system, **args)
    if workload == "fill":
        return load.fill(system, **args)
    if workload == "readers":
        return load.readers(system, **args)
    if workload == "writers":
        return load.writers(system, **args)
    raise ValueError(f"unknown workload {workload!r}")


def serve(system: Any, requests: TextIO, replies: TextIO) -> None:
    """Answer requests until "stop" or the end of ``requests``; the system is stopped either way."""
    def reply(message: dict[str, Any]) -> None:
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    try:
        for line in requests:
            if not line.strip():
                continue
            request = json.loads(line)
            op = request.get("op")
            try:
                if op == "state":
                    reply({"ok": True, "leader": system.is_leader(), "term": system.term()})
                elif op == "run":
                    reply({"ok": True, "result": _run(system, request["workload"], dict(request.get("args", {})))})
                elif op == "stop":
                    break
                else:
                    reply({"ok": False, "error": f"unknown op {op!r}"})
            except Exception as exc:
                logging.getLogger("benchmarks.member").exception("request %s failed", op)
                reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
    finally:
        system.stop()
    reply({"ok": True, "stopped": True})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--system", required=True, choices=sorted(systems.SYSTEMS))
    parser.add_argument("--binding", required=True)
    parser.add_argument("--peers", required=True, help="comma-separated bindings of the other members")
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--log-level", default="WARNING")
    options = parser.parse_args(argv)
    replies = _protocol_stream()
    logging.basicConfig(level=options.log_level, stream=sys.stderr,
                        format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")
    try:
        system = systems.create(options.system, options.binding, options.peers.split(","), options.data_dir)
        system.start()
    except Exception as exc:
        traceback.print_exc()
        replies.write(json.dumps({"event": "failed", "error": f"{type(exc).__name__}: {exc}"}) + "\n")
        return 1
    replies.write(json.dumps({"event": "started", "pid": os.getpid()}) + "\n")
    replies.flush()
    serve(system, sys.stdin, replies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
