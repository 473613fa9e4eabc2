"""A Jepsen-style fault-injection suite for the kvstore: real member processes, injected network
and process faults, a recorded history of client operations and a linearizability checker.

``history`` records what clients saw, ``linearizability`` judges it, ``network`` cuts and slows
the links between members, ``nemesis`` schedules faults, ``workload`` runs the clients, ``checks``
and ``report`` turn a run into a verdict, and ``runner`` ties them together (``scripts/jepsen``).
"""
