"""A member's Prometheus metrics: the runtime's counters and histograms (:mod:`ckite.metrics.member`)
and its state read at scrape time (:mod:`ckite.metrics.gauges`), in one registry per member
(``CKite.metrics_registry``, or the application's: ``CKiteBuilder.with_metrics_registry``)."""
from ckite.metrics.gauges import StatusGauges
from ckite.metrics.member import MemberMetrics

__all__ = ["MemberMetrics", "StatusGauges"]
