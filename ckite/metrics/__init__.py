"""A member's metrics: the runtime's counters and histograms (:mod:`ckite.metrics.member`) and its
state read at scrape time (:mod:`ckite.metrics.gauges`), in one Prometheus registry per member
(``CKite.metrics_registry``, or the application's: ``CKiteBuilder.with_metrics_registry``); or,
with metrics off, plain counts and no prometheus_client at all (:mod:`ckite.metrics.counts`).
The Prometheus classes are imported on first use, so ``import ckite`` does not load it."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ckite.metrics.counts import MemberCounts

if TYPE_CHECKING:
    from ckite.metrics.gauges import StatusGauges
    from ckite.metrics.member import MemberMetrics

__all__ = ["MemberCounts", "MemberMetrics", "StatusGauges"]


def __getattr__(name: str) -> Any:
    if name == "MemberMetrics":
        from ckite.metrics.member import MemberMetrics
        return MemberMetrics
    if name == "StatusGauges":
        from ckite.metrics.gauges import StatusGauges
        return StatusGauges
    raise AttributeError(f"module 'ckite.metrics' has no attribute {name!r}")
