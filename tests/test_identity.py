"""Member identity: a member knows itself under every name that reaches it, never adds itself (or
another member) a second time under another name, and refuses a loopback id that its peers on
other machines could not reach."""
from __future__ import annotations

import logging

import pytest

from ckite import CKiteBuilder
from ckite.errors import MembershipChangeError, ProtocolError
from ckite.identity import MemberIdentity, check_reachable_id, host_named_by_peers
from ckite.messages import AppendEntries, RequestVote
from kvstore.cli import build as build_from_flags
from kvstore.cli import parser
from tests.cluster_fixture import TestCluster
from tests.kv_example import KVStore
from tests.netutil import free_port
from tests.raft_harness import Harness


def test_a_member_is_itself_under_any_name_of_the_address_it_listens_on():
    me = MemberIdentity("localhost:9091")
    assert me.is_self("localhost:9091") and me.is_self("127.0.0.1:9091")
    assert not me.is_self("127.0.0.1:9092")                      # another port: another member
    assert not MemberIdentity("127.0.0.1:9091").is_self("127.0.0.2:9091")   # another loopback address
    assert MemberIdentity("127.0.0.1:9091", "0.0.0.0:9091").is_self("127.0.0.2:9091")   # listening everywhere
    assert not me.is_self("no-such-host.invalid:9091")


def test_a_loopback_id_is_refused_when_a_peer_is_not_on_loopback():
    check_reachable_id("localhost:9091", ["127.0.0.1:9092", "localhost:9093"])   # one machine: fine
    check_reachable_id("10.1.2.3:9091", ["10.1.2.4:9092"])                       # not loopback: fine
    with pytest.raises(ValueError, match=r"localhost:9091 names a loopback address.*10\.1\.2\.4:9092 is not "
                                         r"on loopback.*--host"):
        check_reachable_id("localhost:9091", ["127.0.0.1:9092", "10.1.2.4:9092"])


def test_without_host_a_member_takes_the_host_its_peers_are_named_by_on_this_machine():
    assert host_named_by_peers(["127.0.0.1:9092", "127.0.0.1:9093"]) == "127.0.0.1"
    assert host_named_by_peers(["localhost:9092", "localhost:9093"]) == "localhost"
    assert host_named_by_peers(["127.0.0.1:9092", "localhost:9093"]) == "localhost"   # no single name
    assert host_named_by_peers(["10.1.2.4:9092"]) == "localhost"                        # not this machine
    assert host_named_by_peers([]) == "localhost"


def test_the_kvstore_cli_names_a_member_as_its_peers_do_and_refuses_an_unreachable_id(tmp_path):
    port = free_port()
    member = build_from_flags(parser().parse_args(["--port", str(port), "--members", "127.0.0.1:9092,127.0.0.1:9093",
                                                   "--data-dir", str(tmp_path / "a")]))
    try:
        assert member.id == f"127.0.0.1:{port}"
    finally:
        member.stop()
    with pytest.raises(ValueError, match="--host"):
        build_from_flags(parser().parse_args(["--port", str(port), "--members", "10.1.2.4:9092",
                                              "--data-dir", str(tmp_path / "b")]))


def test_the_builder_drops_this_member_from_its_peers_under_any_of_its_names():
    port = free_port()
    config = (CKiteBuilder().with_local_binding(f"localhost:{port}")
              .with_members_bindings([f"127.0.0.1:{port}", "127.0.0.1:9092"])
              .with_in_memory_storage().with_state_machine(KVStore()).config())
    assert config.members_bindings == ["127.0.0.1:9092"]


def test_a_request_claiming_this_members_own_id_is_refused_and_said_once(caplog):
    harness = Harness(3)
    node = harness["n1"]
    caplog.set_level(logging.WARNING, logger="ckite.consensus.consensus")
    for request in (AppendEntries(5, "n1", 0, 0, []), RequestVote(5, "n1", 0, 0), AppendEntries(6, "n1", 0, 0, [])):
        with pytest.raises(ProtocolError, match="own id"):
            node.handle_request(request)
    assert node.term == 0   # nothing was acted on
    assert len([r for r in caplog.records if "own id" in r.getMessage()]) == 1


def test_the_leader_refuses_to_add_itself_or_a_member_under_another_name():
    cluster = TestCluster("thrift", 3).start_all()
    try:
        leader = cluster.leader()
        follower = cluster.followers()[0]
        before = leader.status()["configuration"]
        leader_port, follower_port = (m.id.rpartition(":")[2] for m in (leader, follower))
        with pytest.raises(MembershipChangeError, match=rf"localhost:{leader_port} is this member .* under another "
                                                        "name"):
            leader.add_member(f"localhost:{leader_port}", timeout=2)
        with pytest.raises(MembershipChangeError, match=rf"is the member {follower.id} under another name"):
            follower.add_member(f"localhost:{follower_port}", timeout=2)   # forwarded: the leader refuses
        assert leader.status()["configuration"] == before
    finally:
        cluster.stop_all()
