"""kvstore: a replicated key-value store, the example application of ckite.

It uses only ckite's public API: a :class:`~kvstore.store.KVStore` state machine with its
commands, and HTTP routes (:func:`~kvstore.http.kv_blueprint`) added to ckite's admin server.
Run a member with ``python -m kvstore --help``.
"""
from kvstore.store import CompareAndSet, Delete, Get, KVStore, Put

__all__ = ["CompareAndSet", "Delete", "Get", "KVStore", "Put"]
