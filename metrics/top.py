"""``sekat top``: a live terminal view of one or more workers, read from their ``/metrics``.

For an engineer without Grafana at hand. Rates are the difference between two
scrapes of the same worker divided by the time between them, summed over
workers; latency quantiles are interpolated from the histogram buckets'
differences the way Prometheus's ``histogram_quantile`` does. The safety
brake's line shows what it holds in shadow (by dimension) and every trip
between the two scrapes. Given the agency API's ``/metrics`` too (another ``--url``), the time from a command
to its institution's ``executed`` feedback is shown per institution and action: the median since the API
started, from the cumulative buckets (feedback is too rare for a rate over seconds). ``render`` is a
pure function of two scrapes, so a frame is testable without a terminal.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from prometheus_client.parser import text_string_to_metric_families

Labels = frozenset[tuple[str, str]]
CLEAR = "\x1b[H\x1b[2J"
# Shown against the workers' own objective and goal (sekat_decision_latency_{objective,goal}_seconds); these stand
# in for workers that do not expose them.
OBJECTIVE_SECONDS = 0.250
GOAL_SECONDS = 0.010


@dataclass(frozen=True)
class Scrape:
    """One worker's /metrics at one moment; ``samples`` is None when it did not answer."""

    url: str
    at: float
    samples: dict[tuple[str, Labels], float] | None
    error: str = ""

    def values(self, name: str, **match: str) -> Iterable[tuple[dict[str, str], float]]:
        for (sample, labels), value in (self.samples or {}).items():
            if sample == name:
                d = dict(labels)
                if all(d.get(k) == v for k, v in match.items()):
                    yield d, value

    def total(self, name: str, **match: str) -> float:
        return sum(v for _, v in self.values(name, **match))


def parse(text: str) -> dict[tuple[str, Labels], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(url: str, timeout: float = 2.0, clock: Callable[[], float] = time.time) -> Scrape:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            text = resp.read().decode("utf-8", errors="replace")
        return Scrape(url, clock(), parse(text))
    except Exception as exc:  # noqa: BLE001 - a worker that does not answer is shown as down
        return Scrape(url, clock(), None, f"{type(exc).__name__}: {exc}"[:80])


@dataclass
class Pair:
    """Before/after scrapes of the workers that answered both times."""

    pairs: list[tuple[Scrape, Scrape]] = field(default_factory=list)

    def rate(self, name: str, by: str | None = None, **match: str) -> dict[str, float]:
        """Per-second increase summed over workers, optionally grouped by one label ('' when not grouped)."""
        return self._deltas(name, by, per_second=True, **match)

    def increase(self, name: str, by: str, **match: str) -> dict[str, float]:
        """Increase between the two scrapes summed over workers, grouped by one label."""
        return self._deltas(name, by, per_second=False, **match)

    def _deltas(self, name: str, by: str | None, per_second: bool, **match: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for before, after in self.pairs:
            dt = after.at - before.at
            if dt <= 0:
                continue
            old = {frozenset(lbl.items()): v for lbl, v in before.values(name, **match)}
            for labels, value in after.values(name, **match):
                prev = old.get(frozenset(labels.items()), 0.0)
                delta = value - prev if value >= prev else value  # a restarted worker's counter starts again
                key = labels.get(by, "") if by else ""
                out[key] = out.get(key, 0.0) + (delta / dt if per_second else delta)
        return out


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus-style quantile from cumulative bucket counts {upper bound: count}."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    prev_bound, prev_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _num(x: float) -> str:
    return f"{x:,.1f}" if x < 1e6 else f"{x:.3g}"


def _parts(values: dict[str, float], limit: int = 5) -> str:
    shown = sorted(((k, v) for k, v in values.items() if v > 0), key=lambda kv: -kv[1])[:limit]
    return "   ".join(f"{k} {_num(v)}" for k, v in shown)


def _against(p99: float | None, objective: float, goal: float) -> str:
    """The p99 against the paging objective and the ticket-level goal."""
    if p99 is None:
        return ""
    figures = f"goal {goal * 1000:g} ms, objective {objective * 1000:g} ms"
    if p99 > objective:
        return f"   OVER OBJECTIVE ({figures})"
    if p99 > goal:
        return f"   over goal ({figures})"
    return f"   ({figures})"


def render(before: Sequence[Scrape], after: Sequence[Scrape], now: datetime | None = None) -> str:
    """One frame from two scrapes of the same workers (matched by URL)."""
    now = now or datetime.now(timezone.utc)
    earlier = {s.url: s for s in before if s.samples is not None}
    up = [s for s in after if s.samples is not None]
    down = [s for s in after if s.samples is None]
    pair = Pair([(earlier[s.url], s) for s in up if s.url in earlier])
    interval = max((a.at - b.at for b, a in pair.pairs), default=0.0)

    events = pair.rate("sekat_events_total", by="stream")
    total = sum(events.values())
    required = 0.0
    for s in up:
        period = s.total("sekat_target_period_seconds")
        if period > 0:
            required = max(required, s.total("sekat_target_attempts") / period)
    buckets: dict[float, float] = {}
    for le, inc in pair.increase("sekat_decision_latency_seconds_bucket", by="le").items():
        buckets[float(le)] = buckets.get(float(le), 0.0) + inc
    p50, p99 = quantile(0.50, buckets), quantile(0.99, buckets)
    commands = pair.rate("sekat_commands_total", by="action")
    dead = pair.rate("sekat_deadletters_total", by="reason")
    lookups = pair.rate("sekat_blocklist_lookups_total", by="result")
    looked = sum(lookups.values())
    errors = sum(pair.rate("sekat_blocklist_lookup_errors_total").values())
    lag_by: dict[str, float] = {}
    lag_topics: dict[str, float] = {}  # the screening inputs and the reports intake (sekat.reports)
    for s in up:
        for labels, value in s.values("sekat_consumer_lag_messages"):
            topic = labels.get("topic", "?")
            key = f"{topic}/{labels.get('partition', '?')}"
            lag_by[key] = lag_by.get(key, 0.0) + value
            lag_topics[topic] = lag_topics.get(topic, 0.0) + value
    lag = sum(lag_by.values())
    objective = max((s.total("sekat_decision_latency_objective_seconds") for s in up), default=0.0)
    goal = max((s.total("sekat_decision_latency_goal_seconds") for s in up), default=0.0)
    staleness = [s.total("sekat_blocklist_replica_staleness_seconds") for s in up]
    # Every worker reads the same tripped set: the engaged gauge is the largest any worker reports, not a sum.
    engaged: dict[str, float] = {}
    for s in up:
        for labels, value in s.values("sekat_brake_engaged"):
            d = labels.get("dimension", "?")
            engaged[d] = max(engaged.get(d, 0.0), value)
    tripped = sum(pair.increase("sekat_brake_trips_total", by="dimension").values())
    trips_since = sum(s.total("sekat_brake_trips_total") for s in up)
    brake_errors = sum(pair.rate("sekat_brake_errors_total").values())

    lines = [
        f"sekat top   {now.strftime('%Y-%m-%d %H:%M:%SZ')}   over {interval:.1f} s   "
        f"workers {len(up)}/{len(after)} up",
        f"events/s       {_num(total):>10}   {_parts(events)}",
    ]
    if required > 0:
        lines.append(f"target         {_num(required):>10}/s required   headroom {total / required:.2f}x")
    lines.append(f"latency        p50 {_ms(p50)}   p99 {_ms(p99)}"
                 f"{_against(p99, objective or OBJECTIVE_SECONDS, goal or GOAL_SECONDS)}")
    since = sum(s.total("sekat_commands_total") for s in up)
    lines.append(f"commands/s     {_num(sum(commands.values())):>10}   {_parts(commands)}   (since start {since:,.0f})")
    dead_since = sum(s.total("sekat_deadletters_total") for s in up)
    lines.append(f"dead letters/s {_num(sum(dead.values())):>10}   {_parts(dead)}   (since start {dead_since:,.0f})")
    worst = max(lag_by.items(), key=lambda kv: kv[1], default=None)
    worst_text = f"   largest {worst[0]} {worst[1]:,.0f}" if worst and worst[1] > 0 else ""
    topics = f"   {_parts(lag_topics)}" if lag > 0 else ""
    lines.append(f"consumer lag   {lag:>10,.0f} records{topics}{worst_text}")
    hit_rate = f"{100 * lookups.get('hit', 0.0) / looked:.2f} %" if looked > 0 else "-"
    stale = f"{max(staleness):.1f} s" if staleness else "-"
    lines.append(f"blocklist      staleness {stale}   hit rate {hit_rate}   lookup errors/s {_num(errors)}")
    on = "   ".join(f"{d} {n:,.0f}" for d, n in sorted(engaged.items()) if n > 0)
    lines.append(f"safety brake   {'ENGAGED   ' + on if on else 'none engaged'}   trips {tripped:,.0f} "
                 f"(since start {trips_since:,.0f})   errors/s {_num(brake_errors)}")
    acting = time_to_act(up)
    if acting:
        lines.append("time to act    " + "   ".join(
            f"{institution} {action} p50 {_duration(p50)} ({n:,.0f})" for (institution, action), (p50, n) in acting))
    for s in down:
        lines.append(f"DOWN           {s.url}   {s.error}")
    return "\n".join(lines) + "\n"


def time_to_act(scrapes: Sequence[Scrape], limit: int = 6) -> list[tuple[tuple[str, str], tuple[float, float]]]:
    """(institution, action) -> (median seconds to executed, commands), the most commands first, since start."""
    buckets: dict[tuple[str, str], dict[float, float]] = {}
    for s in scrapes:
        for labels, value in s.values("sekat_command_time_to_act_seconds_bucket"):
            key = (labels.get("institution", "?"), labels.get("action", "?"))
            le = float(labels.get("le", "inf"))
            buckets.setdefault(key, {})[le] = buckets.get(key, {}).get(le, 0.0) + value
    found = []
    for key, counts in buckets.items():
        p50 = quantile(0.5, counts)
        if p50 is not None:
            found.append((key, (p50, counts[max(counts)])))
    return sorted(found, key=lambda kv: (-kv[1][1], kv[0]))[:limit]


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def run(urls: Sequence[str], interval: float, once: bool, write: Callable[[str], object],
        sleep: Callable[[float], None] = time.sleep) -> int:
    """Scrape every ``interval`` seconds and write a frame; ``once``: one frame from two scrapes."""
    before = [scrape(u) for u in urls]
    try:
        while True:
            sleep(interval)
            after = [scrape(u) for u in urls]
            frame = render(before, after)
            write(frame if once else CLEAR + frame)
            if once:
                return 0 if any(s.samples is not None for s in after) else 1
            before = after
    except KeyboardInterrupt:
        return 0
