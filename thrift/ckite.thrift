/*
 * The wire protocol between ckite members: framed transport, binary protocol (standard Thrift,
 * so any Thrift client can talk to a member).
 *
 * Ported from CKite's ckite.thrift (namespace java ckite.rpc.thrift). Every struct keeps CKite's
 * name, and CKite's fields keep their ids and names; each field below says whether it is
 * "CKite's" or an "addition", and why it changed.
 *
 * Changes that apply everywhere:
 *  - Terms are i64 (CKite: i32), like indexes: one integer type for both, no overflow to think about.
 *    A changed type means a changed wire form, so a CKite (Scala) member cannot join a ckite
 *    cluster; the ids are kept for readability, not for compatibility.
 *  - CKite's "optional ... = -1" coordinates are required here: our log has a real sentinel
 *    (index 0, term 0) and a negative term or index is rejected as malformed.
 *  - Every method throws CKiteErrorST. CKite's server "failed" a request by interrupting the
 *    promise, so a remote caller hung until its 60 s timeout; here the error comes back at once
 *    and the caller raises the same ckite.errors exception.
 *
 * The Python side maps these structs to the dataclasses of ckite/messages.py in
 * ckite/rpc/thrift_codec.py; a field added here needs a line there.
 */

namespace java ckite.rpc.thrift
namespace py ckite_thrift

struct LogEntryST {
  1: required i64 term;        // CKite's (was i32)
  2: required i64 index;       // CKite's
  3: required binary command;  // CKite's: the entry's data (Kryo in CKite; here opaque bytes whose meaning `kind` gives)
  4: optional i8 kind = 0;     // addition: ckite.log.entry.EntryKind (0 command, 1 no-op, 2 configuration);
                               // CKite told entries apart by the Kryo class of `command`
}

struct AppendEntriesST {
  1: required i64 term;                  // CKite's (was i32)
  2: required string leaderId;           // CKite's
  3: required i64 commitIndex;           // CKite's (was optional, default -1): leaderCommit
  4: required i64 prevLogIndex;          // CKite's (was optional, default -1)
  5: required i64 prevLogTerm;           // CKite's (was optional i32, default -1)
  6: optional list<LogEntryST> entries;  // CKite's (CKite sent one entry per call; we send batches); absent = heartbeat
}

struct AppendEntriesResponseST {
  1: required i64 term;              // CKite's (was i32)
  2: required bool success;          // CKite's
  3: optional i64 matchIndex = 0;    // addition: on success, the last index known to match the leader,
                                     // so that a reordered or duplicated reply cannot move it wrongly
  4: optional i64 conflictIndex = 0; // addition: fast backtracking on failure (thesis §5.3): first index
                                     // the follower holds for conflictTerm, or its last index + 1
  5: optional i64 conflictTerm = 0;  // addition: the follower's term at prevLogIndex (0 when its log is too short)
}

struct RequestVoteST {
  1: required string memberId;       // CKite's: the candidate
  2: required i64 term;              // CKite's (was i32)
  3: required i64 lastLogIndex;      // CKite's (was optional, default -1)
  4: required i64 lastLogTerm;       // CKite's (was optional i32, default -1)
  5: optional bool preVote = false;  // addition: Pre-Vote (thesis §9.6), "would you vote?" without a term change
  6: optional bool transfer = false; // addition: election started by a leadership transfer (may override a lease)
}

struct RequestVoteResponseST {
  1: required i64 currentTerm;  // CKite's (was i32)
  2: required bool granted;     // CKite's
}

// CKite sent the whole snapshot in one call, as a nested SnapshotST { stateMachineState,
// lastLogEntryIndex, lastLogEntryTerm, membershipState }. Here a snapshot travels in chunks so
// that no frame has to hold a whole state machine, and SnapshotST is folded into this struct.
struct InstallSnapshotST {
  1: required i64 term;           // CKite's (was i32)
  2: required string leaderId;    // CKite's
  3: required i64 lastIndex;      // CKite's SnapshotST.lastLogEntryIndex
  4: required i64 lastTerm;       // CKite's SnapshotST.lastLogEntryTerm (was i32)
  5: required binary configuration; // CKite's SnapshotST.membershipState (Kryo there; an encoded configuration here)
  6: required i64 offset;         // addition: byte position of `data` in the snapshot
  7: required binary data;        // CKite's SnapshotST.stateMachineState, one chunk of it
  8: required bool done;          // addition: true on the last chunk
  9: optional i64 size = 0;       // addition: the whole state's length in bytes (it is streamed from a file)
  10: optional i64 checksum = 0;  // addition: the whole state's CRC-32, checked by the follower before it installs
}

struct InstallSnapshotResponseST {
  1: required bool success;        // CKite's
  2: required i64 term;            // addition: Raft's reply carries the term, so a stale leader steps down
  3: optional i64 nextOffset = 0;  // addition: the byte the follower expects next (resume after a lost chunk)
}

// Addition: leadership transfer (thesis §3.10); the leader tells an up-to-date follower to
// start an election at once.
struct TimeoutNowST {
  1: required i64 term;
  2: required string leaderId;
}

struct TimeoutNowResponseST {
  1: required i64 term;
  2: required bool accepted;
}

// Addition: CKite's sendCommand carried a Kryo-serialized command object; a forwarded request
// is now explicit about what it asks, and bounded in time.
struct ForwardRequestST {
  1: required string kind;     // ckite.messages.ForwardKind value: write, client_request, read_index, change_members,
                               // transfer_leadership
  2: required binary payload;  // an encoded command (write), a session's request (client_request: msgpack
                               // [session, seq, acked, command, key, fingerprint]), nothing (read_index: a follower's reads ask the
                               // leader for a read index, answered as a msgpack integer), msgpack
                               // {"add": [ids], "remove": [ids]} (change_members), or a UTF-8 binding (transfer)
  3: required i64 timeoutMs;   // how long the leader may take before it gives up
}

struct JoinMemberST {
  1: required string memberId;     // CKite's
  2: optional i64 timeoutMs = 0;   // addition: CKite waited an unbounded time for the join to commit
}

struct JoinMemberResponseST {
  1: required bool success;  // CKite's
}

// Addition: a ckite.errors exception raised by the remote handler.
exception CKiteErrorST {
  1: string errorClass;          // the class name in ckite.errors (unknown names are raised as RpcError)
  2: string message;
  3: optional string leader;     // NotLeaderError.leader
  4: optional string errorType;  // CommandError.error_type
}

service CKiteService {
  RequestVoteResponseST sendRequestVote(1: RequestVoteST requestVote) throws (1: CKiteErrorST error);
  AppendEntriesResponseST sendAppendEntries(1: AppendEntriesST appendEntries) throws (1: CKiteErrorST error);
  // CKite's was `binary sendCommand(1: binary command)`; the result is still opaque bytes
  // (ckite.messages.ForwardResponse.result, msgpack-encoded).
  binary sendCommand(1: ForwardRequestST command) throws (1: CKiteErrorST error);
  InstallSnapshotResponseST sendInstallSnapshot(1: InstallSnapshotST installSnapshot) throws (1: CKiteErrorST error);
  JoinMemberResponseST sendJoinMember(1: JoinMemberST memberId) throws (1: CKiteErrorST error);
  // Addition: leadership transfer.
  TimeoutNowResponseST sendTimeoutNow(1: TimeoutNowST timeoutNow) throws (1: CKiteErrorST error);
}
