"""ckite-py against PySyncObj, in the same run and under the same client load.

``python -m benchmarks`` (or ``scripts/bench``) starts a three-member cluster of each system as
separate processes on loopback, drives the same load generator inside each leader, and prints a
table plus a JSON file. See benchmarks/README.md for what each row measures and why the load
lives in the leader's process.

Modules: ``__main__`` (command line), ``runner`` (clusters, rows, accounting), ``member`` (the
member process and its control protocol), ``systems`` (one adapter per library and
configuration), ``load`` (the workloads, shared by every system), ``procstat`` (CPU, RSS and
machine load from /proc), ``report`` (medians, the best-of-PySyncObj column, ratios, the table),
``targets`` (issue 13's targets against that column), ``profile`` (py-spy of the leader, cost
per committed entry by stage).

``python -m benchmarks.large_state`` is issue 14's "Large state" row (benchmarks/README.md):
``large_state`` (command line), ``large_state_row`` (the steps of a row, the same for both
systems), ``large_state_ckite`` and ``large_state_pysyncobj`` (one adapter each),
``status_poller`` (every member's status every 50 ms) and ``status_summary`` (what those answers
say), ``memory_guard`` (peak RSS; stops a row before the machine runs out of memory),
``large_state_targets`` and ``large_state_report`` (issue 14's targets, the table).
"""
