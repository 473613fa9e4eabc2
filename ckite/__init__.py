"""ckite: Raft consensus for Python applications, a port of CKite.

Typical use::

    from ckite import CKiteBuilder
    member = (CKiteBuilder().with_local_binding("localhost:9091")
              .with_members_bindings(["localhost:9092", "localhost:9093"])
              .with_data_dir("/tmp/ckite/member1").with_state_machine(KVStore()).build())
    member.start()
    member.write(Put("k", "v")); member.read(Get("k"))
"""
from importlib import metadata as _metadata

from ckite.api import CKite
from ckite.builder import CKiteBuilder
from ckite.commands import Command, ReadCommand, WriteCommand
from ckite.member_status import MemberStatus
from ckite.statemachine import StateMachine
from ckite.write_result import WriteResult

try:
    #: The installed distribution's version (setup.cfg's ``version``).
    __version__: str = _metadata.version("ckite")
except _metadata.PackageNotFoundError:   # imported from a source tree that was never pip-installed
    __version__ = "0+unknown"

__all__ = ["CKite", "CKiteBuilder", "Command", "MemberStatus", "ReadCommand", "StateMachine", "WriteCommand",
           "WriteResult", "__version__"]
