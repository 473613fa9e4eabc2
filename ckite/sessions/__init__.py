"""Client sessions (Raft thesis §6.3): exactly-once writes whatever a client retries.

``request.py`` is what a session's write carries in the log, ``table.py`` the deterministic
table every member keeps while applying (duplicates answered from it, expiry by the log's own
time, part of every snapshot), ``client.py`` the client's side (``CKite.session()``).
"""
