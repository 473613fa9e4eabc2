"""A deterministic, seedable simulation of a ckite cluster: simulated clock and network.

It drives the real consensus core (:class:`ckite.consensus.consensus.Consensus`) with no
threads: every message is an event on a simulated timeline, delayed, dropped, duplicated
or reordered by a seeded RNG, so that a failing run replays exactly from its seed::

    .venv/bin/python -m tests.simulation --seed 1234 --seconds 60 -v
"""
