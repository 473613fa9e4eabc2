"""A run's report directory: ``history.json``, ``verdict.json`` and ``timeline.html``.

The timeline is one self-contained HTML page (inline SVG, no scripts from anywhere): a lane per
client thread with each operation as a bar from invocation to completion, coloured by outcome,
the nemesis' faults as shaded bands across all lanes, and the operations of a linearizability
witness outlined. Hovering a bar shows the operation.
"""
from __future__ import annotations

import html
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.jepsen.history import FAIL, INFO, OK, History, Op

COLOURS = {OK: "#3a9d4f", INFO: "#f0a030", FAIL: "#8a8a8a", "mismatch": "#4a78c0"}
WIDTH, LANE, TOP, LEFT = 1400, 14, 70, 90


def write_report(out: Path, history: History, verdict: dict[str, Any], witness: Iterable[Op] = (),
                 clients: int = 1) -> None:
    out.mkdir(parents=True, exist_ok=True)
    history.save(out / "history.json")
    (out / "verdict.json").write_text(json.dumps(verdict, indent=2, default=str) + "\n")
    (out / "timeline.html").write_text(timeline(history, verdict, list(witness), clients))


def timeline(history: History, verdict: dict[str, Any], witness: list[Op], clients: int) -> str:
    end = max([op.complete or op.invoke for op in history.ops] + [e.time for e in history.events] + [1.0])
    scale = (WIDTH - LEFT - 10) / end
    lanes = sorted({_lane(op, clients) for op in history.ops})
    row = {lane: index for index, lane in enumerate(lanes)}
    height = TOP + LANE * len(lanes) + 30
    marked = {op.index for op in witness}

    def x(t: float) -> float:
        return LEFT + t * scale

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" '
             f'font-size="11">']
    for second in range(0, int(end) + 1, max(int(end / 20), 1)):
        parts.append(f'<line x1="{x(second):.1f}" y1="{TOP - 8}" x2="{x(second):.1f}" y2="{height - 25}" '
                     f'stroke="#eee"/><text x="{x(second):.1f}" y="{height - 10}" '
                     f'text-anchor="middle">{second}s</text>')
    for index, (start, stop, fault, detail) in enumerate(_faults(history, end)):
        y = 8 + (index % 4) * 14
        parts.append(f'<rect x="{x(start):.1f}" y="{TOP - 8}" width="{max(x(stop) - x(start), 1):.1f}" '
                     f'height="{height - TOP - 25}" fill="#e04040" opacity="0.12"><title>{html.escape(fault)}: '
                     f'{html.escape(detail)} ({start:.1f}s-{stop:.1f}s)</title></rect>'
                     f'<text x="{x(start):.1f}" y="{y + 10}" fill="#a02020">{html.escape(fault)}: '
                     f'{html.escape(detail)}</text>')
    for lane in lanes:
        parts.append(f'<text x="4" y="{TOP + row[lane] * LANE + 10}">{html.escape(lane)}</text>')
    for op in history.ops:
        y = TOP + row[_lane(op, clients)] * LANE
        stop = op.complete if op.complete is not None else end
        colour = COLOURS["mismatch" if op.mismatch else op.outcome or INFO]
        outline = ' stroke="#000" stroke-width="2"' if op.index in marked else ""
        parts.append(f'<rect x="{x(op.invoke):.1f}" y="{y + 1}" width="{max(x(stop) - x(op.invoke), 1.5):.1f}" '
                     f'height="{LANE - 3}" fill="{colour}"{outline}><title>{html.escape(op.describe())}</title></rect>')
    parts.append("</svg>")
    legend = " ".join(f'<span style="background:{c};color:#fff;padding:1px 6px">{html.escape(name)}</span>'
                      for name, c in COLOURS.items())
    witness_text = "\n".join(op.describe() for op in witness)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>jepsen {html.escape(str(verdict.get('seed')))}"
            f"</title></head><body style='font-family:sans-serif'>"
            f"<h3>{html.escape(verdict.get('line', ''))}</h3><p>{legend} "
            f"<span style='background:#e04040;opacity:.3;padding:1px 6px'>fault</span> "
            f"outlined: operations of the minimal non-linearizable sub-history</p>{''.join(parts)}"
            + (f"<h4>Minimal offending sub-history</h4><pre>{html.escape(witness_text)}</pre>" if witness else "")
            + f"<h4>Verdict</h4><pre>{html.escape(json.dumps(verdict, indent=2, default=str))}</pre></body></html>")


def _lane(op: Op, clients: int) -> str:
    """Client threads keep their lane when they continue as a new process after an unknown outcome."""
    return "final" if op.process < 0 else f"client {op.process % clients}"


def _faults(history: History, end: float) -> list[tuple[float, float, str, str]]:
    """(start, heal, fault, detail) intervals; a fault never healed lasts to the end."""
    faults, open_ = [], []
    for event in history.events:
        if event.phase == "start":
            open_.append(event)
        elif event.phase == "heal":
            started = next((e for e in open_ if e.fault == event.fault and e.detail == event.detail), None)
            if started is not None:
                open_.remove(started)
                faults.append((started.time, event.time, event.fault, event.detail))
    faults += [(e.time, end, e.fault, e.detail) for e in open_]
    return faults
