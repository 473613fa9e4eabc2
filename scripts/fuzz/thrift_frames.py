"""Coverage-guided fuzzing (atheris) of what a member does with a frame from the network.

One input is one frame, handled as the Thrift server handles it, without a socket: the
structural check (``check_frame``), thriftpy2's decoder, the codec and the validation
(``HandlerAdapter``), then a handler that records the request. A frame may be refused at any of
those steps (the server then closes the connection, or answers with an error); what must never
happen is a request that breaks the validation rules reaching the handler, an input that takes
long (libFuzzer's -timeout) or that makes memory grow (-rss_limit_mb).

Run it with scripts/fuzz/run (bounded in time), or directly:
    .venv/bin/python scripts/fuzz/thrift_frames.py -max_total_time=60 CORPUS_DIR
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from thriftpy2.protocol.cybin import TCyBinaryProtocol
    from thriftpy2.thrift import TProcessor
    from thriftpy2.transport.framed import TCyFramedTransport
    from thriftpy2.transport.memory import TCyMemoryBuffer

    from ckite.log.entry import EntryKind, LogEntry
    from ckite.messages import (AppendEntries, ForwardKind, ForwardRequest, InstallSnapshot, JoinMember,
                                RequestVote, TimeoutNow)
    from ckite.rpc import validation
    from ckite.rpc.frame_check import MalformedFrame, check_frame
    from ckite.rpc.idl import CKiteService
    from ckite.rpc.thrift_codec import encode_request
    from ckite.rpc.thrift_transport import HandlerAdapter, _FrameSource
    from ckite.consensus.membership import Configuration

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.netutil import answer   # noqa: E402  (the fake member's answers)

LIMITS = validation.RequestLimits(max_entries_per_append=1000, max_append_bytes=1 << 20)
CONFIGURATION = Configuration.of(["a:1", "b:2"]).encode()


#: Requests the adapter should have refused; test_one_input raises for them (the adapter would turn an
#: exception raised inside the handler into an error reply, hiding it).
LET_THROUGH: list[str] = []


class CheckingHandler:
    """A member that insists every request it is handed obeys the validation rules."""

    def handle(self, request):
        try:
            validation.validate_request(request, LIMITS)
        except validation.EncodingError as exc:
            LET_THROUGH.append(f"{request!r}: {exc}")
        return answer(request)


PROCESSOR = TProcessor(CKiteService, HandlerAdapter(CheckingHandler(), "fuzz", LIMITS))


def handle_frame(frame: bytes) -> None:
    """What _FrameServer does with one frame read from a connection."""
    try:
        check_frame(frame, LIMITS.max_entries_per_append)
    except MalformedFrame:
        return
    source = _FrameSource()
    source.load(frame)
    inbound = TCyBinaryProtocol(TCyFramedTransport(source), strict_decode=True)
    outbound = TCyBinaryProtocol(TCyFramedTransport(TCyMemoryBuffer()))
    try:
        PROCESSOR.process(inbound, outbound)
    except Exception:   # thriftpy2 could not decode it (or encode the reply): the server closes that connection
        pass
    if LET_THROUGH:
        raise AssertionError(f"the handler was handed an invalid request: {LET_THROUGH.pop()}")


def test_one_input(data: bytes) -> None:
    if len(data) < 4:
        return
    handle_frame(len(data).to_bytes(4, "big") + data)   # the length always matches: reach the decoder


def seeds() -> list[bytes]:
    """Valid calls of every method, the starting corpus (without their length header)."""
    entries = [LogEntry(1, 1, b"\x92\xa4tick\x80"), LogEntry(2, 1, b"", EntryKind.NOOP),
               LogEntry(3, 2, CONFIGURATION, EntryKind.CONFIGURATION)]
    requests = [RequestVote(3, "c:1", 7, 2, pre_vote=True), AppendEntries(2, "l:1", 0, 0, entries, 1),
                AppendEntries(2, "l:1", 3, 2), InstallSnapshot(2, "l:1", 9, 2, CONFIGURATION, 0, b"state", True),
                TimeoutNow(2, "l:1"), ForwardRequest(ForwardKind.WRITE, b"\x92\xa4tick\x80", 500),
                JoinMember("new:9095", 1000)]
    frames = []
    for request in requests:
        method, argument = encode_request(request)
        out = TCyMemoryBuffer()
        protocol = TCyBinaryProtocol(out)
        protocol.write_message_begin(method, 1, 1)
        getattr(CKiteService, f"{method}_args")(argument).write(protocol)
        frames.append(out.getvalue())
    return frames


def main() -> None:
    corpus = next((Path(arg) for arg in sys.argv[1:] if not arg.startswith("-")), None)
    if corpus is not None:
        corpus.mkdir(parents=True, exist_ok=True)
        for number, frame in enumerate(seeds()):
            (corpus / f"seed-{number}").write_bytes(frame)
    logging.disable(logging.CRITICAL)   # every refusal logs a line: millions of them here
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
