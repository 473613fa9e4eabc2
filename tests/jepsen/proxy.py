"""Mode ``proxy``: a fault-injecting TCP proxy per directed pair of members, on loopback.

Every member reaches every other one through its own proxy (``member1 -> member2`` is not the
proxy of ``member3 -> member2``), so a link can be cut one way only, or slowed, independently of
the others. Member ids stay the real ``host:port`` bindings — they travel in Raft messages and
configuration entries, so all members must agree on them — and each member process is started
under ``tests.jepsen.member``, which redirects its outgoing connections to a peer's binding to
that pair's proxy. All of it listens on loopback only.

What a link fault does to the bytes, and why:

* **cut** (a partition): the proxy stops reading from the sender and delivers nothing already
  read. Like packets dropped by a firewall, calls time out rather than being refused, the
  sender's kernel buffers fill, and what was in flight arrives after the heal, late — the
  delayed, possibly stale delivery Raft must tolerate. A connection made during the cut is
  accepted but hangs the same way.
* **delay** (latency, with jitter): each chunk is delivered after the delay, in order.
* **loss**: a stream cannot lose bytes, and TCP does not; a lost segment costs a retransmission
  instead. So a chunk is "lost" with the given probability and then delivered a retransmission
  timeout (``RETRANSMIT_DELAY``) later, which is what loss looks like to the application.

The proxies run on an asyncio loop on one daemon thread; fault changes made from other threads
return once they are in force.
"""
from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from tests.jepsen.network import CUT, DELAY, LOSS, LinkFaults, Network, Pair

MODE = "proxy"
LOOPBACK = "127.0.0.1"
#: What a lost segment costs TCP: Linux's minimum retransmission timeout.
RETRANSMIT_DELAY = 0.2
CHUNK_BYTES = 65536


@dataclass
class _Link:
    faults: LinkFaults = field(default_factory=LinkFaults)
    #: Set while the link is not cut; pumps wait on it (only touched on the loop's thread).
    passable: asyncio.Event = field(default_factory=asyncio.Event)


class ProxyNetwork(Network):
    """Proxies for every ordered pair of ``targets`` (member name -> its real (host, port))."""

    mode = MODE
    supports = frozenset({CUT, LOSS, DELAY})

    def __init__(self, targets: Mapping[str, tuple[str, int]], seed: int = 0) -> None:
        super().__init__(targets)
        self.targets = dict(targets)
        self._rng = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="jepsen-proxy", daemon=True)
        self._thread.start()
        self._links: dict[Pair, _Link] = {}
        self._servers: dict[Pair, asyncio.base_events.Server] = {}
        self._connections: set[asyncio.StreamWriter] = set()
        self.proxy_ports: dict[Pair, int] = self._call(self._open_all())

    # --- where members are and how they run -------------------------------------------------

    def host(self, name: str) -> str:
        return self.targets[name][0]

    def routes(self, source: str) -> dict[tuple[str, int], tuple[str, int]]:
        """For ``source``'s process: each peer's real address -> the proxy it must dial instead."""
        return {self.targets[dest]: (LOOPBACK, port) for (src, dest), port in self.proxy_ports.items()
                if src == source}

    def command(self, name: str, command: list[str]) -> list[str]:
        """Run the member under ``tests.jepsen.member`` with its routes to the proxies."""
        if command[1:3] != ["-m", "kvstore"]:
            raise RuntimeError(f"unexpected member command line {command[:3]}: update ProxyNetwork.command")
        routes = [f"--route={host}:{port}={proxy_host}:{proxy_port}"
                  for (host, port), (proxy_host, proxy_port) in self.routes(name).items()]
        return [command[0], "-m", "tests.jepsen.member", *routes, "--", *command[3:]]

    def _apply(self, faults: Mapping[Pair, LinkFaults]) -> None:
        self._call(self._set(faults))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._call(self._close_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    # --- on the loop's thread ---------------------------------------------------------------

    def _call(self, coroutine):   # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _open_all(self) -> dict[Pair, int]:
        ports = {}
        for source in self.targets:
            for dest in self.targets:
                if source == dest:
                    continue
                link = self._links[(source, dest)] = _Link()
                link.passable.set()
                server = await asyncio.start_server(
                    lambda r, w, s=source, d=dest: self._serve(r, w, s, d), LOOPBACK, 0)
                self._servers[(source, dest)] = server
                ports[(source, dest)] = server.sockets[0].getsockname()[1]
        return ports

    async def _set(self, table: Mapping[Pair, LinkFaults]) -> None:
        for pair, faults in table.items():
            link = self._links[pair]
            link.faults = faults
            if faults.cut:
                link.passable.clear()
            else:
                link.passable.set()

    async def _close_all(self) -> None:
        for server in self._servers.values():
            server.close()
        for writer in list(self._connections):
            writer.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter,
                     source: str, dest: str) -> None:
        """One connection from ``source`` to ``dest``: dial the real ``dest``, then pump both ways."""
        try:
            await self._relay(client_reader, client_writer, source, dest)
        except asyncio.CancelledError:
            pass   # the network is closing; asyncio's stream callback would log a cancelled task

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter,
                     source: str, dest: str) -> None:
        self._connections.add(client_writer)
        await self._links[(source, dest)].passable.wait()   # a cut link: connections hang
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.targets[dest])
        except OSError:
            client_writer.close()   # the member is down: refused, as it would be without the proxy
            self._connections.discard(client_writer)
            return
        self._connections.add(server_writer)
        try:
            await asyncio.gather(self._pump(client_reader, server_writer, self._links[(source, dest)]),
                                 self._pump(server_reader, client_writer, self._links[(dest, source)]))
        except OSError:
            pass   # either end went away: close the other too
        finally:
            for writer in (client_writer, server_writer):
                writer.close()
                self._connections.discard(writer)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link) -> None:
        """Copy one direction under ``link``'s faults, keeping the byte order."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                await asyncio.sleep(max(due - loop.time(), 0))
                await link.passable.wait()
                if not chunk:   # the sender closed its side: pass the EOF on
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(chunk)
                await writer.drain()

        delivering = asyncio.ensure_future(deliver())
        last_due = 0.0
        try:
            while True:
                await link.passable.wait()
                chunk = await reader.read(CHUNK_BYTES)
                faults = link.faults
                delay = faults.delay + self._rng.uniform(0, faults.jitter)
                if faults.loss and self._rng.random() < faults.loss:
                    delay += RETRANSMIT_DELAY
                last_due = max(last_due, loop.time() + delay)
                queue.put_nowait((last_due, chunk))
                if not chunk:
                    break
            await delivering
        finally:
            delivering.cancel()

