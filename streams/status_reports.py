"""pacs.002 status reports on payments Sekat held, recorded as those holds' outcomes.

    screening batch ─ acked ─> each PaymentStatus of its pacs.002 messages
        ─> the HOLD_TRANSFER that named the payment (by UETR, else transaction id, else end-to-end id, as the
           pacs.008 adapter put them in the command; blocklist/feedback.py keeps them for
           SEKAT_FEEDBACK_WINDOW_DAYS)
        ─> feedback on that command (``"via": "pacs.002"``, outcome accepted / rejected / pending, the status
           and its reason code in ``reason_code`` and ``note``), applied as the API applies an institution's
           (blocklist/review.py): on SEKAT_TOPIC_FEEDBACK, in the entries' feedback history

A status on a payment Sekat did not hold is only counted. Counted by result in
``sekat_status_reports_total{result="matched|unmatched|failed"}``; the first feedback on a hold is timed in
``sekat_command_first_feedback_seconds`` as the API times an institution's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram

from sekat.blocklist.feedback import ACT_BUCKETS, FeedbackStore
from sekat.blocklist.review import FeedbackDesk, feedback_record
from sekat.clock import Clock
from sekat.records import PaymentStatus


class StatusReports:
    def __init__(self, feedback: FeedbackStore, desk: FeedbackDesk, clock: Clock, registry: CollectorRegistry) -> None:
        self.feedback = feedback
        self.desk = desk
        self.clock = clock
        self.counted = Counter("sekat_status_reports_total", "pacs.002 payment statuses read, by whether they "
                               "matched a payment Sekat held", ["result"], registry=registry)
        for result in ("matched", "unmatched", "failed"):
            self.counted.labels(result)
        self.first_feedback = Histogram("sekat_command_first_feedback_seconds", "From a command's issue to the "
                                        "first feedback on it, by institution", ["institution"],
                                        registry=registry, buckets=ACT_BUCKETS)

    async def record(self, statuses: Sequence[PaymentStatus]) -> None:
        """Each status on a held payment becomes its hold's feedback; raises what Kafka or Redis raised."""
        for status in statuses:
            try:
                sent = await self.feedback.by_payment([status.uetr, status.tx_id, status.end_to_end_id])
                if sent is None:
                    self.counted.labels("unmatched").inc()
                    continue
                now = self.clock()
                note = f"pacs.002 {status.status}" + (f" ({status.reason})" if status.reason else "")
                record = feedback_record(sent, status.outcome, now, note=note, reason_code=status.reason,
                                         via="pacs.002", by=f"pacs.002:{status.message_id}")
                applied = await self.desk.apply(record, now)
                if applied.first:
                    took = (now - datetime.fromisoformat(sent.issued_at)).total_seconds()
                    self.first_feedback.labels(sent.institution).observe(max(0.0, took))
            except Exception:
                self.counted.labels("failed").inc()
                raise
            self.counted.labels("matched").inc()
