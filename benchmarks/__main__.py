"""Command line: ``python -m benchmarks [--quick] [--only ckite|pysyncobj] [--out FILE] ...``.

Prints the table on stdout (progress on stderr) and writes every number to the JSON file.
Exit status 0 when every system ran; 1 when a system could not run (its error is in the JSON);
2 for bad arguments. Timings are never judged: a slow run still exits 0.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from benchmarks.runner import Options, run
from benchmarks.systems import SYSTEMS


def parse(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description="ckite-py against PySyncObj: 3-member clusters on loopback, "
                                                 "same load, same run.")
    parser.add_argument("--duration", type=float, default=None, help="seconds per timed row (default 5; quick: 1)")
    parser.add_argument("--quick", action="store_true",
                        help="a short smoke run: 1 s rows, 2,000-key fill, one configuration per library")
    parser.add_argument("--only", choices=("ckite", "pysyncobj"), help="run one library's configurations only")
    parser.add_argument("--systems", help="comma-separated configurations to run; one of: " + ", ".join(SYSTEMS))
    parser.add_argument("--runs", type=int, default=1, help="repeat everything N times; the table shows medians")
    parser.add_argument("--out", type=Path, default=Path("artifacts/benchmark-results.json"),
                        help="JSON results file (default artifacts/benchmark-results.json)")
    parser.add_argument("--inflight", type=int, default=2000,
                        help="asynchronous writes kept in flight in the concurrent rows (default 2000, issue 13's "
                             "window for both libraries)")
    parser.add_argument("--writer-threads", type=int, default=64,
                        help="threads doing blocking writes in row 2b (default 64)")
    parser.add_argument("--read-clients", type=int, default=64, help="reader threads on the leader in row 3")
    parser.add_argument("--member-readers", type=int, default=64,
                        help="reader threads in each member in row 3b, linearizable reads on every member")
    parser.add_argument("--fill-keys", type=int, default=None, help="keys written for the memory row "
                                                                     "(default 100000; quick: 2000)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="py-spy the ckite leader and a follower during the 16 B concurrent row; "
                             "writes flame data and a per-entry cost breakdown to DIR")
    parser.add_argument("--profile-mode", choices=("gil", "wall"), default="gil",
                        help="gil: interpreter time only (default); wall: every thread, waiting included")
    parser.add_argument("--profile-row", default="concurrent_write_16B",
                        choices=("sequential_write", "concurrent_write_16B", "concurrent_write_16B_threads",
                                 "concurrent_write_1KiB", "linearizable_read", "linearizable_read_every_member"),
                        help="the row during which --profile samples (default: concurrent_write_16B)")
    parser.add_argument("--workdir", type=Path, help="keep member data and logs here (default: a temporary "
                                                     "directory, removed afterwards)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)

    if args.systems:
        systems = [s.strip() for s in args.systems.split(",") if s.strip()]
        unknown = [s for s in systems if s not in SYSTEMS]
        if unknown:
            parser.error(f"unknown system(s) {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
    else:
        systems = [s.name for s in SYSTEMS.values() if s.default]
        if args.quick:   # one configuration per library: the default one
            systems = [s for s in systems if s in ("ckite", "pysyncobj")]
    if args.only:
        systems = [s for s in systems if SYSTEMS[s].family == args.only]
    if any(SYSTEMS[s].family == "pysyncobj" for s in systems) and importlib.util.find_spec("pysyncobj") is None:
        print("PySyncObj is not installed (pip install -e '.[bench]', or use scripts/bench); "
              "running ckite-py only", file=sys.stderr)
        systems = [s for s in systems if SYSTEMS[s].family != "pysyncobj"]
    if not systems:
        parser.error("no system left to run")
    # Run ours and theirs alternately, so that a change of load on the machine hits both alike.
    ours = [s for s in systems if SYSTEMS[s].family == "ckite"]
    theirs = [s for s in systems if SYSTEMS[s].family != "ckite"]
    interleaved = ([s for pair in zip(ours, theirs, strict=False) for s in pair]
                   + ours[len(theirs):] + theirs[len(ours):])
    duration = args.duration if args.duration is not None else (1.0 if args.quick else 5.0)
    return Options(systems=interleaved, duration=duration, warmup=0.4 if args.quick else 1.0,
                   inflight=args.inflight, writer_threads=args.writer_threads, read_clients=args.read_clients,
                   member_readers=args.member_readers,
                   fill_keys=args.fill_keys if args.fill_keys is not None else (2000 if args.quick else 100_000),
                   runs=max(args.runs, 1), out=args.out, profile_dir=args.profile, profile_mode=args.profile_mode,
                   profile_row=args.profile_row, workdir=args.workdir,
                   keep=args.keep)


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    document = run(options)
    print(document["table"])
    print(f"\nresults: {options.out}")
    failed = [s for s, summary in document["summary"].items() if summary["failed_runs"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
