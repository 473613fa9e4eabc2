"""Issue 14's benchmark row, "Large state": ``python -m benchmarks.large_state [--state-mib 100,1024] [--quick]``.

For each state size, ckite-py (three ``python -m kvstore`` processes, HTTP only) and then
PySyncObj (three member processes, when it is installed) each get a fresh cluster on loopback
with log compaction every 100 entries, are filled with values of ``--value-kib`` up to
``--state-mib``, get ``--overwrites`` more writes, and then have a follower wiped and restarted
(``benchmarks.large_state_row``), while every member's status is polled every 50 ms. Prints a
table per state size with issue 14's targets beside ckite-py's numbers, and writes every number
to ``artifacts/large-state-results.json`` (after each system, so an interrupted run keeps what
it measured). Exit status 0 whenever the run got to its end, however slow or failed a row was:
the benchmark reports, it never judges; 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import large_state_report, large_state_row, large_state_targets, report
from benchmarks.large_state_row import PROBLEMS, Plan
from benchmarks.runner import write_json

#: Issue 14's scenario: 512 KiB values, 250 writes after the fill; its rows: 100 MiB and 1 GiB.
DEFAULTS = {"state_mib": [100], "value_kib": 512, "overwrites": 250}
#: --quick (the smoke test): a state that takes seconds, still several snapshots per member.
QUICK = {"state_mib": [8], "value_kib": 32, "overwrites": 20}
OUT = Path("artifacts/large-state-results.json")


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of MiB") from None
    if not sizes or min(sizes) <= 0:
        raise argparse.ArgumentTypeError("state sizes must be positive")
    return sizes


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.large_state", description=__doc__.split("\n")[0])
    parser.add_argument("--state-mib", type=_sizes, help="state sizes, one row each (default 100; e.g. 100,1024)")
    parser.add_argument("--value-kib", type=int, help="size of every value (default 512)")
    parser.add_argument("--overwrites", type=int, help="writes after the fill, to the same keys (default 250)")
    parser.add_argument("--quick", action="store_true", help="8 MiB of 32 KiB values, 20 overwrites (the smoke test)")
    parser.add_argument("--only", choices=("ckite", "pysyncobj"), help="run one system only")
    parser.add_argument("--catch-up-timeout", type=float, default=180.0,
                        help="how long the wiped follower gets to serve the last key (default 180 s)")
    parser.add_argument("--min-available-mib", type=float, default=3072.0,
                        help="stop a row, killing its members, when the machine has less memory available "
                             "(MemAvailable; default 3072)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON results (default {OUT})")
    parser.add_argument("--workdir", type=Path, help="keep the members' data and logs here (default: a temporary "
                                                     "directory; data dirs are removed after each row, the logs "
                                                     "too unless a row did not run whole)")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.value_kib <= 0 or args.overwrites < 0:
        parser.error("--value-kib must be positive and --overwrites at least 0")
    args.systems = [s for s in ("ckite", "pysyncobj") if args.only in (None, s)]
    if "pysyncobj" in args.systems and importlib.util.find_spec("pysyncobj") is None:
        print("PySyncObj is not installed (pip install -e '.[bench]'); running ckite-py only", file=sys.stderr)
        args.systems.remove("pysyncobj")
    if not args.systems:
        parser.error("no system left to run")
    return args


def _system(name: str, directory: Path, plan: Plan) -> Any:
    if name == "ckite":
        from benchmarks.large_state_ckite import KVStoreCluster
        return KVStoreCluster(directory, plan)
    from benchmarks.large_state_pysyncobj import PySyncObjCluster
    return PySyncObjCluster(directory, plan)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    say = lambda message: print(message, file=sys.stderr, flush=True)   # noqa: E731 - progress on stderr
    base = args.workdir or Path(tempfile.mkdtemp(prefix="ckite-large-state-"))
    document: dict[str, Any] = {"meta": {**report.machine(), "options": {k: v for k, v in vars(args).items()
                                                                         if k not in ("out", "workdir")}},
                                "rows": []}
    document["meta"]["options"]["workdir"] = str(base)
    try:
        for state_mib in args.state_mib:
            plan = Plan(state_mib, args.value_kib, args.overwrites, args.catch_up_timeout, args.min_available_mib)
            row: dict[str, Any] = {"plan": asdict(plan), "keys": plan.keys, "outcomes": {}}
            document["rows"].append(row)
            say(f"state {state_mib} MiB")
            for name in args.systems:
                directory = base / f"{state_mib}MiB" / name
                directory.mkdir(parents=True, exist_ok=True)
                system = _system(name, directory, plan)
                row["outcomes"][name] = large_state_row.run(system, plan, say)
                if "ckite" in row["outcomes"]:
                    row["targets"] = large_state_targets.issue_14(row["outcomes"]["ckite"])
                document["table"] = large_state_report.table(document["rows"])
                write_json(args.out, document)
                if args.workdir is None:   # a 1 GiB row leaves gigabytes; the members' logs stay
                    for data_dir in system.data_dirs():
                        shutil.rmtree(data_dir, ignore_errors=True)
    finally:
        troubled = any(problem in outcome for row in document["rows"] for outcome in row["outcomes"].values()
                       for problem in PROBLEMS)
        if args.workdir is None and not troubled:
            shutil.rmtree(base, ignore_errors=True)
        else:
            say(f"members' logs kept in {base}")
    print(document["table"])
    print(f"\nresults: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
