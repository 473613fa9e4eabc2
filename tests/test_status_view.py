"""The admin console's view of a member: CKite's /status shape built from hand-made
``Consensus.status()`` dicts, and the Prometheus families built from the same dicts."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ckite import WriteCommand
from ckite.admin.status_view import PREVIEW_BYTES, format_duration, render_status
from ckite.codec import encode_command
from ckite.consensus.membership import Configuration
from ckite.log.entry import EntryKind
from ckite.metrics import StatusGauges
from ckite.sessions.request import OPEN_SESSION, ClientRequest, stamped


@dataclass
class Note(WriteCommand, type_name="tests.status_view.note"):
    key: str
    value: str | bytes


def leader_status(**log_extra) -> dict:
    return {
        "id": "a:9091", "term": 3, "state": "Leader", "leader": "a:9091", "votedFor": "a:9091",
        "stateInfo": {"leaderUptimeMs": 133_148, "reads": "lease", "leaseRemainingMs": 612, "leaseRevoked": False,
                      "followers": {"b:9092": {"matchIndex": 7, "nextIndex": 8, "inflight": 1, "lastAckMs": 128},
                                    "c:9093": {"matchIndex": 0, "nextIndex": 1, "inflight": 0, "lastAckMs": None}}},
        "configuration": {"voters": ["a:9091", "b:9092", "c:9093"], "oldVoters": None, "learners": [],
                          "joint": False},
        "log": {"length": 9, "firstIndex": 1, "lastIndex": 9, "lastTerm": 3, "commitIndex": 7, "lastApplied": 6,
                **log_extra},
    }


def follower_status() -> dict:
    return {"id": "b:9092", "term": 3, "state": "Follower", "leader": "a:9091", "votedFor": None,
            "stateInfo": {"following": "a:9091", "lastLeaderContactMs": 42},
            "configuration": {"voters": ["a:9091", "b:9092"], "oldVoters": ["a:9091", "b:9092", "c:9093"],
                              "learners": ["d:9094"], "joint": True},
            "log": {"length": 0, "firstIndex": 1, "lastIndex": 0, "lastTerm": 0, "commitIndex": 0, "lastApplied": 0}}


@pytest.mark.parametrize("ms, text", [
    (None, "Never"), (0, "0.milliseconds"), (1, "1.milliseconds"), (1000, "1.seconds"),
    (133_148, "2.minutes+13.seconds+148.milliseconds"), (3_600_001, "1.hours+1.milliseconds"),
    (90_000_000, "1.days+1.hours"), (-5, "0.milliseconds"), (12.6, "13.milliseconds"),
])
def test_durations_are_written_as_ckite_wrote_them(ms, text):
    assert format_duration(ms) == text


def test_leader_status_keeps_ckite_shape():
    view = render_status(leader_status())
    cluster = view["cluster"]
    assert (view["id"], cluster["term"], cluster["state"], cluster["leader"]) == ("a:9091", 3, "Leader", "a:9091")
    info = cluster["stateInfo"]
    assert info["leaderUptime"] == "2.minutes+13.seconds+148.milliseconds"
    assert info["leaderUptimeMs"] == 133_148
    assert (info["reads"], info["leaseRemaining"], info["leaseRevoked"]) == ("lease", "612.milliseconds", False)
    assert info["lastHeartbeatsACKs"] == {"b:9092": "128.milliseconds", "c:9093": "Never"}
    assert view["log"]["length"] == 9 and view["log"]["commitIndex"] == 7 and view["log"]["lastApplied"] == 6


def test_leader_status_gives_each_followers_replication_state_and_lag():
    followers = render_status(leader_status())["cluster"]["stateInfo"]["followers"]
    assert followers["b:9092"] == {"matchIndex": 7, "nextIndex": 8, "inflight": 1, "lag": 2,
                                   "lastHeartbeatACK": "128.milliseconds", "lastHeartbeatACKMs": 128}
    assert followers["c:9093"]["lag"] == 9
    assert followers["c:9093"]["lastHeartbeatACKMs"] is None


def test_follower_status_names_whom_it_follows_and_since_when():
    view = render_status(follower_status())
    info = view["cluster"]["stateInfo"]
    assert info == {"following": "a:9091", "lastLeaderContactMs": 42, "lastLeaderContact": "42.milliseconds"}
    assert list(info) == ["following", "lastLeaderContact", "lastLeaderContactMs"]   # the human form first


def test_members_include_old_voters_and_learners_of_a_joint_configuration():
    view = render_status(follower_status())
    assert view["cluster"]["members"] == ["a:9091", "b:9092", "c:9093", "d:9094"]
    assert view["cluster"]["configuration"]["joint"] is True


def test_candidate_and_starter_details_pass_through():
    candidate = {**follower_status(), "state": "Candidate", "stateInfo": {"preVote": True, "votesGranted": ["b:9092"]}}
    assert render_status(candidate)["cluster"]["stateInfo"] == {"preVote": True, "votesGranted": ["b:9092"]}
    starter = {**follower_status(), "state": "Starter", "stateInfo": {}}
    assert render_status(starter)["cluster"]["stateInfo"] == {}


def test_last_log_without_the_entry_has_term_and_index_only():
    last_log = render_status(leader_status())["log"]["lastLog"]
    assert last_log == {"term": 3, "index": 9, "kind": None, "command": None}


def test_last_log_command_is_decoded_with_its_fields():
    data = encode_command(Note("k1", "v1"))
    last_log = render_status(leader_status(lastEntry={"kind": EntryKind.COMMAND, "data": data}))["log"]["lastLog"]
    assert last_log == {"term": 3, "index": 9, "kind": "command", "commandType": "tests.status_view.note",
                        "command": {"key": "k1", "value": "v1"}}


def test_a_large_last_command_shows_only_its_type_and_size():
    data = encode_command(Note("k1", "v" * (PREVIEW_BYTES + 1)))
    last_log = render_status(leader_status(lastEntry={"kind": EntryKind.COMMAND, "data": data}))["log"]["lastLog"]
    assert last_log == {"term": 3, "index": 9, "kind": "command", "commandType": "tests.status_view.note",
                        "command": None, "bytes": len(data), "truncated": True}
    garbage = b"\xc1" * (PREVIEW_BYTES + 1)
    last_log = render_status(leader_status(lastEntry={"kind": EntryKind.COMMAND, "data": garbage}))["log"]["lastLog"]
    assert (last_log["commandType"], last_log["bytes"]) == (None, len(garbage))


def test_a_client_session_entry_shows_its_command_session_and_number():
    request = ClientRequest(7, 3, 2, encode_command(Note("k1", "v1"))).encode()
    last_log = render_status(leader_status(lastEntry={"kind": EntryKind.CLIENT_REQUEST,
                                                      "data": stamped(1000, request)}))["log"]["lastLog"]
    assert last_log == {"term": 3, "index": 9, "kind": "client_request", "commandType": "tests.status_view.note",
                        "command": {"key": "k1", "value": "v1"}, "session": 7, "seq": 3}
    opening = render_status(leader_status(lastEntry={"kind": EntryKind.CLIENT_REQUEST,
                                                     "data": stamped(1000, OPEN_SESSION.encode())}))
    assert opening["log"]["lastLog"]["opensSession"] is True


def test_binary_command_fields_become_base64_and_utf8_bytes_become_text():
    data = encode_command(Note("k", b"\xff\x00"))
    command = render_status(leader_status(lastEntry={"kind": "command", "data": data}))["log"]["lastLog"]["command"]
    assert command == {"key": "k", "value": {"base64": "/wA="}}
    data = encode_command(Note("k", "é".encode()))
    command = render_status(leader_status(lastEntry={"kind": 0, "data": data}))["log"]["lastLog"]["command"]
    assert command["value"] == "é"


def test_noop_configuration_and_undecodable_entries_are_described_not_raised():
    noop = render_status(leader_status(lastEntry={"kind": EntryKind.NOOP, "data": b""}))["log"]["lastLog"]
    assert (noop["kind"], noop["command"]) == ("noop", None)
    config = Configuration.of(["a:9091", "b:9092"]).encode()
    entry = render_status(leader_status(lastEntry={"kind": EntryKind.CONFIGURATION, "data": config}))
    assert entry["log"]["lastLog"]["command"]["voters"] == ["a:9091", "b:9092"]
    garbage = render_status(leader_status(lastEntry={"kind": EntryKind.COMMAND, "data": b"\xc1"}))["log"]["lastLog"]
    assert garbage["command"] is None and "malformed" in garbage["undecodable"]


def test_unknown_fields_pass_through_so_the_core_can_add_some():
    status = {**leader_status(), "snapshot": {"lastIndex": 4, "bytes": b"ok"}}
    status["log"]["compactedThrough"] = 4
    view = render_status(status)
    assert view["snapshot"] == {"lastIndex": 4, "bytes": "ok"}
    assert view["log"]["compactedThrough"] == 4


# --- Prometheus ----------------------------------------------------------------------------------

def scrape(status: dict) -> dict[tuple[str, tuple], float]:
    registry = CollectorRegistry()
    registry.register(StatusGauges(lambda: status))
    text = generate_latest(registry).decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_of_a_leader():
    samples = scrape(leader_status())
    assert samples[("ckite_term", ())] == 3
    assert samples[("ckite_role", (("role", "Leader"),))] == 1
    assert samples[("ckite_role", (("role", "Follower"),))] == 0
    assert samples[("ckite_is_leader", ())] == 1
    assert samples[("ckite_commit_index", ())] == 7
    assert samples[("ckite_applied_index", ())] == 6
    assert samples[("ckite_apply_lag_entries", ())] == 1
    assert samples[("ckite_members", ())] == 3
    assert samples[("ckite_follower_lag_entries", (("follower", "b:9092"),))] == 2
    assert samples[("ckite_follower_last_ack_seconds", (("follower", "b:9092"),))] == pytest.approx(0.128)
    assert ("ckite_follower_last_ack_seconds", (("follower", "c:9093"),)) not in samples
    assert samples[("ckite_leader_uptime_seconds", ())] == pytest.approx(133.148)
    assert samples[("ckite_lease_remaining_seconds", ())] == pytest.approx(0.612)


def test_metrics_of_a_follower_have_no_replication_samples():
    samples = scrape(follower_status())
    assert samples[("ckite_role", (("role", "Follower"),))] == 1
    assert samples[("ckite_last_leader_contact_seconds", ())] == pytest.approx(0.042)
    assert ("ckite_lease_remaining_seconds", ()) not in samples
    assert not any(name.startswith("ckite_follower_") for name, _ in samples)
    assert samples[("ckite_member_info", (("leader", "a:9091"), ("member", "b:9092")))] == 1


def test_an_unknown_role_still_gets_its_sample():
    samples = scrape({**follower_status(), "state": "Learner"})
    assert samples[("ckite_role", (("role", "Learner"),))] == 1
