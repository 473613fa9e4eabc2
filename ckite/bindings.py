"""Member bindings ("host:port"): a member's identity in the cluster and its RPC address."""
from __future__ import annotations


def parse_binding(binding: str) -> str:
    """Check a "host:port" binding and return it stripped; raise ValueError with the reason."""
    binding = binding.strip()
    host, sep, port = binding.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad binding {binding!r}: expected host:port with a port in 1..65535")
    return binding
