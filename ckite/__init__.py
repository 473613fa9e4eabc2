"""ckite: Raft consensus for Python applications (a port of CKite)."""
