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
"""
