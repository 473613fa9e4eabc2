"""``python -m tests.jepsen`` (what ``scripts/jepsen`` runs): one run, a one-line verdict, a report.

``--workload register|counter`` picks the clients and their checker (see ``workloads.py``).
``--check DIR/history.json`` checks a saved history again with its workload's checker (register:
linearizable and no lost write; counter: exactly once) without a cluster.
Exit status: 0 valid, 1 invalid, 2 unknown (the checker ran out of time), 64 bad arguments.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.jepsen.history import History
from tests.jepsen.nemesis import ALL, FAULTS
from tests.jepsen.runner import RunConfig, run
from tests.jepsen.workload import WorkloadConfig
from tests.jepsen.workloads import WORKLOADS, of_history

EXIT = {"VALID": 0, "INVALID": 1, "UNKNOWN": 2}


def _faults(text: str) -> list[str]:
    if text == "all":
        return list(ALL)
    if text == "none":
        return []
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in FAULTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown fault(s) {unknown}; known: all, none, {', '.join(FAULTS)}")
    return names


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/jepsen", description="Fault-injection run against kvstore processes: "
                                "clients, nemesis, the workload's checks (linearizability, or exactly-once "
                                "increments) and convergence, a report directory.")
    p.add_argument("--workload", choices=list(WORKLOADS), default=WorkloadConfig.name,
                   help="register: put/get/CAS on a few keys, checked for linearizability; counter: increments of "
                        "one key retried under idempotency keys, checked for exactly once (default: %(default)s)")
    p.add_argument("--time", type=float, default=60.0, help="seconds of workload (default: %(default)s)")
    p.add_argument("--nemesis", type=_faults, default=list(ALL),
                   help=f"'all', 'none' or a comma-separated list of: {', '.join(FAULTS)} (default: all)")
    p.add_argument("--seed", type=int, default=None, help="seeds the nemesis and the clients (default: from the clock)")
    p.add_argument("--members", type=int, default=3, choices=(3, 5))
    p.add_argument("--network", choices=("auto", "netns", "proxy"), default="auto",
                   help="how faults reach the links: namespaces + iptables, or TCP proxies (default: netns "
                        "where it works)")
    p.add_argument("--clients", type=int, default=WorkloadConfig.clients)
    p.add_argument("--keys", type=int, default=None,
                   help=f"keys of the register workload (default: {WorkloadConfig.keys}); the counter has one")
    p.add_argument("--check-budget", type=float, default=120.0, help="seconds for the linearizability search")
    p.add_argument("--out", type=Path, default=None, help="report directory (default: artifacts/jepsen/seed-N-TIME)")
    p.add_argument("--check", type=Path, metavar="HISTORY", help="only check a saved history.json")
    p.add_argument("--verbose", action="store_true", help="log the nemesis' actions to stderr")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.keys is not None and args.workload != WorkloadConfig.name:
        p.error(f"--keys is for the {WorkloadConfig.name} workload; the {args.workload} workload has one key")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
    if args.check:
        history = History.load(args.check)
        judgement = of_history(history).judge(history, args.check_budget)
        for problem in judgement.problems:
            print(problem, file=sys.stderr)
        print(judgement.summary)
        return EXIT["VALID" if judgement.valid else "INVALID" if judgement.valid is False else "UNKNOWN"]
    seed = args.seed if args.seed is not None else int(time.time()) % 100_000
    out = args.out or Path("artifacts/jepsen") / f"seed-{seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    sizes = {"clients": args.clients} | ({"keys": args.keys} if args.keys is not None else {})
    verdict = run(RunConfig(out=out, time=args.time, seed=seed, members=args.members, nemesis=args.nemesis,
                            workload=WORKLOADS[args.workload].config(**sizes),
                            check_budget=args.check_budget, network=args.network))
    for warning in verdict["warnings"]:
        print(f"warning: a member logged an exception:\n{warning}", file=sys.stderr)
    for problem in verdict["problems"]:
        print(problem, file=sys.stderr)
    print(verdict["line"])
    return EXIT[verdict["result"]]


if __name__ == "__main__":
    sys.exit(main())
