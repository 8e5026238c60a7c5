"""Window rules against a plain reference: arrival order, re-delivery, batch splits, workers and restarts change
no verdict (a real Redis).

The reference (``Reference``) is the semantics in plain words, by brute force. For a window rule of width w
and threshold N on a key (call_burst: caller -> callees, w = window_seconds; mule_inflow: payee -> payers,
w = window_minutes), when a batch is processed every observation of the batch is added to its key first;
then each event e = (t, party) of the batch fires iff some closed window [s, s + w] (event time, ms) with
s <= t <= s + w holds at least N distinct parties among every observation ever added to that key (earlier
batches and this whole batch; one event id counts once however often it is delivered; e's own party
counts). Event times stay within the store's retention of ``now``, so nothing is ever trimmed.

Hypothesis draws events for 1-3 keys from a small pool of parties (repeats happen), at random times within
about two windows (often on exact window boundaries, or a millisecond either side), delivers them in a
random order with duplicates (the same event again, in the same batch or a later one) and random batch
splits, with a threshold of 2-6 so verdicts go both ways; each example gets its own key prefix. The real
``RuleStateStore`` and engine must give the reference's verdict for every delivered event, with one store,
and with two stores on separate clients ("workers", some batches at once) that are closed and opened again
("restarts", the last batch re-delivered to the new one). Busy keys (up to 240 events, 40 parties,
thresholds up to 25) take the store through several pages of a window and windows it already found full.
"""

from __future__ import annotations

import asyncio
import copy
from bisect import bisect_left, bisect_right
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sekat.localstack.processes import free_port
from sekat.localstack.redis_servers import RedisServer
from sekat.rules import call_burst, mule_inflow
from sekat.rules.engine import Verdict, decide_call, decide_transfer
from sekat.rules.policy import DEFAULT_POLICY_FILE, Policy, parse_policy
from sekat.rules.registry import Context, Observations
from sekat.streams.state import RuleStateStore
from tests.support import unique
from tests.unit.events import call, transfer

# A passing run takes seconds; a failing one spends minutes shrinking to a minimal example, worth waiting for.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

SETTINGS = settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
# Busy keys: enough points per key that the store reads them in several pages, remembers windows it found
# full, and stops at thresholds up to 25.
BUSY = settings(max_examples=12, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow,
                                                                                     HealthCheck.data_too_large])


@dataclass(frozen=True)
class Event:
    event_id: str
    key: int  # which caller / payee
    party: int  # which callee / payer
    at_ms: int  # event time, ms after the example's start


@dataclass(frozen=True)
class Scenario:
    threshold: int
    width: int  # in the rule's unit: seconds (call_burst) or minutes (mule_inflow)
    mode: str  # enforce | shadow
    batches: tuple[tuple[Event, ...], ...]  # in delivery order


@dataclass(frozen=True)
class WindowRule:
    id: str
    unit_ms: int
    widths: tuple[int, ...]  # window widths drawn, in the rule's unit
    threshold_param: str
    width_param: str
    record: Callable[[Event, datetime], Any]
    read: Callable[[RuleStateStore, Sequence[Any], Policy, datetime], Awaitable[Observations]]
    decide: Callable[[Any, Context, Policy], Verdict]


def _call(e: Event, at: datetime) -> Any:
    return call(e.event_id, at, caller=f"+6012300{e.key:04d}", callee=f"+6019800{e.party:04d}")


def _transfer(e: Event, at: datetime) -> Any:
    return transfer(e.event_id, at, payer=f"5140{e.party:08d}", payee=f"80012345{e.key:02d}")


CALL_BURST = WindowRule(call_burst.ID, 1000, (1, 2, 60), "min_callees", "window_seconds", _call,
                        lambda store, rs, policy, now: store.read_calls(rs, policy, now), decide_call)
MULE_INFLOW = WindowRule(mule_inflow.ID, 60_000, (1, 10), "min_payers", "window_minutes", _transfer,
                         lambda store, rs, policy, now: store.read_transfers(rs, policy, now), decide_transfer)
RULES = [pytest.param(CALL_BURST, id="call_burst"), pytest.param(MULE_INFLOW, id="mule_inflow")]


class Reference:
    """What every key has seen, and each event's verdict from it: brute force, no cleverness."""

    def __init__(self, width_ms: int, threshold: int) -> None:
        self.width_ms = width_ms
        self.threshold = threshold
        self.seen: dict[int, dict[str, tuple[int, int]]] = {}  # key -> event id -> (time, party)

    def batch(self, events: Sequence[Event]) -> list[bool]:
        for e in events:
            self.seen.setdefault(e.key, {})[e.event_id] = (e.at_ms, e.party)
        return [self.fires(e) for e in events]

    def fires(self, e: Event) -> bool:
        w = self.width_ms
        points = sorted(self.seen[e.key].values())
        times = [t for t, _ in points]
        # Which observations [s, s + w] holds changes only where one enters (s = t - w) or leaves (s = t + 1):
        # these starts include every different window; the ones that contain e are its candidates.
        starts = {e.at_ms - w} | {t - w for t in times} | {t + 1 for t in times}
        best = max(len({p for _, p in points[bisect_left(times, s):bisect_right(times, s + w)]})
                   for s in starts if s <= e.at_ms <= s + w)
        return best >= self.threshold


def policy_for(rule: WindowRule, sc: Scenario) -> Policy:
    actions = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())["actions"]
    return parse_policy({"version": "prop-1", "actions": actions, "rules": {
        rule.id: {"mode": sc.mode, "params": {rule.threshold_param: sc.threshold, rule.width_param: sc.width}}}})


class Run:
    """One example against the real store: its records, its policy, its key prefix and its clock."""

    def __init__(self, url: str, rule: WindowRule, sc: Scenario) -> None:
        self.url = url
        self.rule = rule
        self.sc = sc
        self.policy = policy_for(rule, sc)
        self.prefix = unique("rwp") + ":"
        w = sc.width * rule.unit_ms
        # Events lie in [start, start + 2w + 2 ms] and the clock says start + 2w: the store keeps at least 2w
        # before now, so nothing is trimmed, and the clock is the real one (a store may compare with it).
        self.now = datetime.now(timezone.utc).replace(microsecond=0)
        start = self.now - timedelta(milliseconds=2 * w)
        self.records = {e.event_id: rule.record(e, start + timedelta(milliseconds=e.at_ms))
                        for b in sc.batches for e in b}

    def store(self) -> RuleStateStore:
        return RuleStateStore.from_url(self.url, self.prefix)

    async def screen(self, store: RuleStateStore, batch: Sequence[Event]) -> list[bool]:
        """One batch as a worker decides it: read (and add) the state, decide each event, write back."""
        records = [self.records[e.event_id] for e in batch]
        obs = await self.rule.read(store, records, self.policy, self.now)
        verdicts = [self.rule.decide(r, Context(self.now, {}, obs), self.policy) for r in records]
        await store.write([w for v in verdicts for w in v.writes])
        return [self.fired(v) for v in verdicts]

    def fired(self, verdict: Verdict) -> bool:
        decision = verdict.decision
        matches = [m for m in decision.matches if m.rule == self.rule.id]
        assert all(m.mode == self.sc.mode for m in matches), decision
        if matches and self.sc.mode == "shadow":
            assert decision.outcome == "ALLOW" and decision.shadow_outcome != "ALLOW", decision
        elif matches:
            assert decision.outcome != "ALLOW", decision
        return bool(matches)

    def reference(self) -> Reference:
        return Reference(self.sc.width * self.rule.unit_ms, self.sc.threshold)


@st.composite
def scenarios(draw: st.DrawFn, rule: WindowRule, most: int = 24, parties_up_to: int = 7,
              thresholds: tuple[int, int] = (2, 6)) -> Scenario:
    width = draw(st.sampled_from(rule.widths))
    w = width * rule.unit_ms
    step = w // 4
    keys = draw(st.integers(1, 3))
    parties = draw(st.integers(2, parties_up_to))
    on_grid = st.builds(lambda k, d: 1 + k * step + d, st.integers(0, 8), st.sampled_from([0, 0, -1, 1]))
    times = st.one_of(on_grid, st.integers(0, 2 * w + 2))  # exact boundaries and a ms either side, or anywhere
    drawn = draw(st.lists(st.tuples(st.integers(0, keys - 1), st.integers(0, parties - 1), times),
                          min_size=1, max_size=most))
    events = [Event(f"e{i}", k, p, t) for i, (k, p, t) in enumerate(drawn)]
    again = draw(st.lists(st.sampled_from(events), max_size=8))  # re-deliveries
    delivered = draw(st.permutations(events + again))
    cuts = sorted(draw(st.sets(st.integers(1, len(delivered) - 1), max_size=7))) if len(delivered) > 1 else []
    bounds = [0, *cuts, len(delivered)]
    batches = tuple(tuple(delivered[a:b]) for a, b in zip(bounds, bounds[1:]))
    return Scenario(draw(st.integers(*thresholds)), width, draw(st.sampled_from(["enforce", "shadow"])), batches)


@dataclass(frozen=True)
class Turn:
    """How one batch is delivered when two workers share the state."""

    worker: int  # 0 or 1
    restart: bool  # that worker's store is closed and a new one opened (a new client) before the batch
    redeliver: bool  # after a restart, the batch before is delivered again first (at least once)
    together: bool  # this batch and the next are decided at the same time, by the two workers


async def one_store(run: Run) -> tuple[list[list[bool]], list[list[bool]]]:
    ref = run.reference()
    store = run.store()
    try:
        got = [await run.screen(store, batch) for batch in run.sc.batches]
    finally:
        await store.close()
    return got, [ref.batch(batch) for batch in run.sc.batches]


async def two_workers(run: Run, turns: Sequence[Turn]) -> None:
    batches, ref = run.sc.batches, run.reference()
    stores = [run.store(), run.store()]
    try:
        i = 0
        while i < len(batches):
            turn, me = turns[i], turns[i].worker
            if turn.restart:
                await stores[me].close()
                stores[me] = run.store()
                if turn.redeliver and i > 0:
                    assert await run.screen(stores[me], batches[i - 1]) == ref.batch(batches[i - 1]), \
                        f"batch {i - 1} re-delivered after a restart"
            if turn.together and i + 1 < len(batches):
                a, b = batches[i], batches[i + 1]
                got = tuple(await asyncio.gather(run.screen(stores[me], a), run.screen(stores[1 - me], b)))
                # At once, either may come first: the verdicts of one of the two orders, not a mix.
                ab, ba = copy.deepcopy(ref), copy.deepcopy(ref)
                first_a = (ab.batch(a), ab.batch(b))
                first_b = tuple(reversed((ba.batch(b), ba.batch(a))))
                assert got in (first_a, first_b), f"batches {i} and {i + 1} at once: {got} not {first_a}/{first_b}"
                ref = ab
                i += 2
            else:
                assert await run.screen(stores[me], batches[i]) == ref.batch(batches[i]), f"batch {i}"
                i += 1
    finally:
        for store in stores:
            await store.close()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis of the module's own: only Redis is needed, not the session's Kafka."""
    server = RedisServer(tmp_path_factory.mktemp("redis"), free_port())
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.mark.parametrize("rule", RULES)
def test_verdicts_are_the_references_whatever_the_order_duplicates_and_batches(redis_url: str,
                                                                               rule: WindowRule) -> None:
    @SETTINGS
    @given(sc=scenarios(rule))
    def check(sc: Scenario) -> None:
        got, want = asyncio.run(one_store(Run(redis_url, rule, sc)))
        assert got == want

    check()


@pytest.mark.parametrize("rule", RULES)
def test_busy_keys_give_the_references_verdicts(redis_url: str, rule: WindowRule) -> None:
    @BUSY
    @given(sc=scenarios(rule, most=240, parties_up_to=40, thresholds=(2, 25)))
    def check(sc: Scenario) -> None:
        got, want = asyncio.run(one_store(Run(redis_url, rule, sc)))
        assert got == want

    check()


async def _hot_caller(url: str, callees: int, span_s: int) -> tuple[int, int]:
    """A caller who reached ``callees`` distinct callees in the last ``span_s`` seconds, then one more call: its
    verdict and the range reads it cost in Redis."""
    policy = policy_for(CALL_BURST, Scenario(20, 60, "enforce", ()))
    store = RuleStateStore.from_url(url, unique("hot") + ":")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    try:
        seen = [call(f"h{i}", now - timedelta(milliseconds=i * span_s * 1000 // callees), caller="+60123000001",
                     callee=f"+6019{i:07d}") for i in range(callees)]
        for i in range(0, callees, 1000):
            await store.read_calls(seen[i:i + 1000], policy, now)
        stats = store._redis
        before = (await stats.info("commandstats")).get("cmdstat_zrangebyscore", {}).get("calls", 0)
        one = call("h-last", now - timedelta(seconds=30), caller="+60123000001", callee="+60198888888")
        obs = await store.read_calls([one], policy, now)
        after = (await stats.info("commandstats")).get("cmdstat_zrangebyscore", {}).get("calls", 0)
        return obs.count("outbound", "h-last"), after - before
    finally:
        await store.close()


def test_a_hot_key_costs_what_its_threshold_needs_not_its_history(redis_url: str) -> None:
    """50,000 distinct callees in 10 minutes: one more call reads what 25 callees in 30 s need (a page or two)."""
    _, few = asyncio.run(_hot_caller(redis_url, 25, 30))
    count, many = asyncio.run(_hot_caller(redis_url, 50_000, 600))
    assert count == 20 and many <= few <= 2, (few, many)


async def _calls_made(store: RuleStateStore) -> dict[str, int]:
    """Calls Redis has run so far, by command (INFO commandstats)."""
    stats = await store._redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def _busy_batches(url: str) -> tuple[list[int], list[int], int, int]:
    """A caller reaching 25 callees within 30 s, in one batch of 1,000 calls (the same 25 callees again and
    again), then a second batch of 5 more calls inside that window: each batch's counts, and what adding the
    first batch and answering the second cost in ZADDs and range reads."""
    policy = policy_for(CALL_BURST, Scenario(20, 60, "enforce", ()))
    store = RuleStateStore.from_url(url, unique("busy") + ":")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    try:
        first = [call(f"b{i}", now - timedelta(milliseconds=30_000 - i * 30), caller="+60123000002",
                      callee=f"+6019{i % 25:07d}") for i in range(1000)]
        before = await _calls_made(store)
        obs1 = await store.read_calls(first, policy, now)
        middle = await _calls_made(store)
        second = [call(f"n{i}", now - timedelta(seconds=10 + i), caller="+60123000002", callee=f"+6018{i:07d}")
                  for i in range(5)]
        obs2 = await store.read_calls(second, policy, now)
        after = await _calls_made(store)
        return ([obs1.count("outbound", c.event_id) for c in first], [obs2.count("outbound", c.event_id)
                                                                        for c in second],
                middle.get("zadd", 0) - before.get("zadd", 0),
                after.get("zrangebyscore", 0) - middle.get("zrangebyscore", 0))
    finally:
        await store.close()


def test_a_batch_adds_a_keys_events_in_one_zadd_per_flag(redis_url: str) -> None:
    """1,000 calls of one caller to 25 callees: two ZADDs (earliest and latest points) and the note of the full
    window, not two a call."""
    first, _, zadds, _ = asyncio.run(_busy_batches(redis_url))
    assert first == [20] * 1000  # the whole batch is in the window before any call is judged
    assert zadds == 3, zadds


def test_a_window_found_full_answers_the_next_batches_events_without_a_read(redis_url: str) -> None:
    """The next batch's calls inside a window already found full are answered from the key's note of it."""
    _, second, _, reads = asyncio.run(_busy_batches(redis_url))
    assert second == [20] * 5
    assert reads == 0, reads


async def _noted_key(url: str) -> tuple[list[tuple[bytes, float]], float | None]:
    """A caller's window found full: what a range read of any event time returns, and the note's score."""
    policy = policy_for(CALL_BURST, Scenario(3, 60, "enforce", ()))
    prefix = unique("note") + ":"
    store = RuleStateStore.from_url(url, prefix)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    try:
        calls = [call(f"k{i}", now - timedelta(seconds=i), caller="+60123000004", callee=f"+6016{i:07d}")
                 for i in range(4)]
        assert (await store.read_calls(calls, policy, now)).count("outbound", "k0") == 3
        key = f"{prefix}rs:outbound:60000:phone:+60123000004"
        year_ms = 366 * 86_400_000
        now_ms = int(now.timestamp() * 1000)
        ranged = await store._redis.zrangebyscore(key, now_ms - year_ms, now_ms + year_ms, withscores=True)
        return ranged, await store._redis.zscore(key, "#")
    finally:
        await store.close()


def test_a_full_windows_note_is_beyond_every_range_of_event_times(redis_url: str) -> None:
    """The note scores past any event time, so a range read of event times (a worker still on the script from
    before the note, during a rolling upgrade) reads only parties' points, as before."""
    ranged, note = asyncio.run(_noted_key(redis_url))
    assert note is not None and note > 1e15
    assert len(ranged) == 8 and all(b"|" in member for member, _ in ranged)  # 4 callees, earliest and latest


async def _late_call_after_trim(url: str, later: timedelta) -> int:
    """Three callees at t0, t0 + 1 s and t0 + 2 s (threshold 3: the window is full and noted); then, with the
    clock at t0 + ``later``, a fourth callee's call dated t0 + 2.5 s: its count."""
    policy = policy_for(CALL_BURST, Scenario(3, 60, "enforce", ()))
    store = RuleStateStore.from_url(url, unique("trim") + ":")
    t0 = datetime.now(timezone.utc).replace(microsecond=0)
    try:
        first = [call(f"t{i}", t0 + timedelta(seconds=i), caller="+60123000003", callee=f"+6017{i:07d}")
                 for i in range(3)]
        obs = await store.read_calls(first, policy, t0 + timedelta(seconds=3))
        assert [obs.count("outbound", c.event_id) for c in first] == [3, 3, 3]
        late = call("t-late", t0 + timedelta(milliseconds=2500), caller="+60123000003", callee="+60179999999")
        return (await store.read_calls([late], policy, t0 + later)).count("outbound", "t-late")
    finally:
        await store.close()


def test_a_full_windows_note_goes_with_its_trimmed_points(redis_url: str) -> None:
    """Within the retention (10 min) the late call is in the full window; once the first two calls are trimmed,
    it is judged on what is left (two callees), not on the note of a window that no longer holds three."""
    assert asyncio.run(_late_call_after_trim(redis_url, timedelta(minutes=5))) == 3
    assert asyncio.run(_late_call_after_trim(redis_url, timedelta(minutes=10, milliseconds=1500))) == 0


@pytest.mark.parametrize("rule", RULES)
def test_two_workers_and_restarts_give_the_references_verdicts(redis_url: str, rule: WindowRule) -> None:
    turn = st.builds(Turn, st.integers(0, 1), st.booleans(), st.booleans(), st.booleans())

    @settings(SETTINGS, max_examples=50)
    @given(sc=scenarios(rule), turns=st.lists(turn, min_size=8, max_size=8))
    def check(sc: Scenario, turns: list[Turn]) -> None:
        asyncio.run(two_workers(Run(redis_url, rule, sc), turns))

    check()


def _pinned(width_ms: int) -> list[tuple[str, list[list[Event]], list[list[bool]]]]:
    """Hand-worked cases (threshold 3): the reference must give these, and the store the same."""
    w = width_ms
    e = Event
    return [
        ("a closed window: parties exactly w apart count together",
         [[e("a", 0, 0, 0), e("b", 0, 1, w // 2), e("c", 0, 2, w)]], [[True, True, True]]),
        ("a millisecond more and they do not",
         [[e("a", 0, 0, 0), e("b", 0, 1, w // 2), e("c", 0, 2, w + 1)]], [[False, False, False]]),
        ("a late event completes the window; the early ones, re-delivered, now fire too",
         [[e("a", 0, 0, w // 2), e("b", 0, 1, w)], [e("c", 0, 2, 0)], [e("a", 0, 0, w // 2)]],
         [[False, False], [True], [True]]),
        ("re-delivery, in a later batch or twice in one, never counts twice",
         [[e("a", 0, 0, 0), e("b", 0, 1, 1)], [e("a", 0, 0, 0), e("b", 0, 1, 1), e("a", 0, 0, 0)]],
         [[False, False], [False, False, False]]),
        ("the same party twice is one party",
         [[e("a", 0, 0, 0), e("b", 0, 0, 1), e("c", 0, 1, 2)]], [[False, False, False]]),
        ("other keys' parties do not count",
         [[e("a", 0, 0, 0), e("b", 0, 1, 1), e("c", 1, 2, 2)]], [[False, False, False]]),
        ("an event counts in any window that holds it, not only the one ending at it",
         [[e("a", 0, 0, w), e("b", 0, 1, 2 * w)], [e("c", 0, 2, w)]], [[False, False], [True]]),
    ]


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("what", [what for what, _, _ in _pinned(1000)])
def test_pinned_cases(redis_url: str, rule: WindowRule, what: str) -> None:
    [(batches, want)] = [(b, v) for name, b, v in _pinned(rule.widths[0] * rule.unit_ms) if name == what]
    sc = Scenario(3, rule.widths[0], "enforce", tuple(tuple(b) for b in batches))
    got, reference = asyncio.run(one_store(Run(redis_url, rule, sc)))
    assert reference == want, f"the reference is wrong: {what}"
    assert got == want, what
