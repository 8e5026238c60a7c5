"""The benchmark's traffic generator: every event is valid input, and its expected commands are the truth."""

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from load_tests.bench import bench_policy
from load_tests.generate import UNSTAMPED
from load_tests.traffic import (HOT_CALLEES, HOT_CALLER_SPAN_MS, HOT_PAYEE_SPAN_MS, HOT_PAYERS, Population, Traffic,
                                account, mobile)
from sekat.decode.formats import call_decoder, sms_decoder, transfer_decoder
from sekat.records import Entry, Status
from sekat.rules import engine
from sekat.rules.policy import DEFAULT_POLICY_FILE, load_policy, parse_policy
from sekat.rules.registry import Context, Observations
from sekat.rules.windows import most_distinct
from sekat.settings import Settings

NOW = datetime(2026, 11, 29, tzinfo=timezone.utc)
POLICY = parse_policy({"version": "t", "rules": {"blocklist_match": {"mode": "enforce"}},
                       "actions": __import__("yaml").safe_load(DEFAULT_POLICY_FILE.read_text())["actions"]})


def decoders(fmt: str = "json") -> dict:
    settings = Settings.from_environ({"SEKAT_TRANSFERS_FORMAT": fmt})
    return {"transfers": transfer_decoder(settings), "calls": call_decoder(settings), "sms": sms_decoder(settings)}


def decoded(decode: dict, kind: str, value: bytes):  # noqa: ANN201 - a Transfer or a Call
    result = decode[kind](value)
    [event] = result if isinstance(result, list) else [result]
    return event


@pytest.mark.parametrize("hot", [False, True])
@pytest.mark.parametrize("fmt", ["json", "pacs008"])
def test_generated_events_decode_and_their_expected_commands_are_what_sekat_decides(fmt: str, hot: bool) -> None:
    population = Population(customers=2000, listed=50)
    index = {item.key: Entry(key=item.key, status=Status(item.status), source="BENCH") for item in population.listed()}
    decode = decoders(fmt)
    decide = {"transfers": engine.decide_transfer, "calls": engine.decide_call, "sms": engine.decide_sms}
    traffic = Traffic(population, listed_share=0.2, transfer_format=fmt, hot_keys=hot)
    acting = 0
    kinds: dict[str, int] = {}
    for seq in range(400):
        value, _, kind, expected, event_id = traffic.event(seq, "2026-11-29T00:00:00.000Z")
        event = decoded(decode, kind, value)
        assert type(event).__name__ in ("Transfer", "Call", "Sms"), event
        kinds[kind] = kinds.get(kind, 0) + 1
        assert event.event_id == event_id
        lookups = {i.key: index[i.key] for i in event.identifiers() if i.key in index}
        decision = decide[kind](event, Context(NOW, lookups), POLICY).decision
        assert sorted(c.action.value for c in decision.commands) == sorted(expected)
        # the listed identifier its commands are due for: what the safety brake counts them towards
        assert traffic.subjects.get(event_id) == (decision.matches[0].identifier if expected else None)
        acting += bool(expected)
    assert 40 < acting < 140  # about 20 % name a listed identifier
    assert 15 < kinds["sms"] < 70  # about 10 % are SMS, so the throughput figures cover them


def test_hot_keys_take_their_shares_and_deal_with_neither_customers_nor_listed_identifiers() -> None:
    population = Population()  # the benchmark's defaults: 200,000 customers, 2,000 listed
    lanes = [Traffic(population, hot_keys=True, lane=i, lanes=2) for i in range(2)]  # two generator processes
    hot = [t.event(seq, "2026-11-29T00:00:00.000Z") for t in lanes for seq in range(6000) if t.hot_kind(seq)]
    calls = [e for e in hot if e[2] == "calls"]
    transfers = [e for e in hot if e[2] == "transfers"]
    assert len(calls) == 12_000 // 12 and len(transfers) == 12_000 // 60  # 50,000 and 10,000 of 600,000
    assert all(e[3] == () for e in hot)  # no command is due
    decode = decoders()
    callers = {decoded(decode, "calls", e[0]).caller.key for e in calls}
    callees = {decoded(decode, "calls", e[0]).callee.key for e in calls}
    payees = {decoded(decode, "transfers", e[0]).payee.account.key for e in transfers}
    payers = [decoded(decode, "transfers", e[0]).payer for e in transfers]
    assert len(callers) == 1 and len(payees) == 1 and len({e[1] for e in calls}) == 1  # one record key: one partition
    assert len(callees) == len(calls) and len({p.account.key for p in payers}) == len(transfers)  # lanes: distinct
    hot_keys = callers | callees | payees | {p.account.key for p in payers} | {p.phone.key for p in payers}
    # every callee and payer the hot keys will ever have, not only these
    hot_keys |= {f"phone:{population.hot_callee(k)}" for k in range(HOT_CALLEES)}
    hot_keys |= {f"phone:{mobile(population.hot_payer(k))}" for k in range(HOT_PAYERS)}
    hot_keys |= {"account:{}:{}".format(*account(population.hot_payer(k))) for k in range(HOT_PAYERS)}
    assert len(hot_keys) == 2 + HOT_CALLEES + 2 * HOT_PAYERS
    customers = {f"phone:{mobile(n)}" for n in range(population.customers + 2)}
    customers |= {"account:{}:{}".format(*account(n)) for n in range(population.customers + 2)}
    assert not hot_keys & customers
    assert not hot_keys & {item.key for item in population.listed()}


def test_hot_key_events_are_dated_out_of_order_over_their_span_before_they_are_sent() -> None:
    traffic = Traffic(Population(2000, 50), hot_keys=True)
    now = datetime(2026, 11, 29, tzinfo=timezone.utc)
    decode = decoders()
    ages: dict[str, list[float]] = {"calls": [], "transfers": []}
    for seq in range(12_000):
        value, _, kind, _, _ = traffic.event(seq, "2026-11-29T00:00:00.000Z")
        event = decoded(decode, kind, value)
        age_ms = (now - event.occurred_at) / timedelta(milliseconds=1)
        assert age_ms == traffic.backdate_ms(seq)
        if traffic.hot_kind(seq):
            ages[kind].append(age_ms)
            assert UNSTAMPED.encode() in traffic.event(seq, UNSTAMPED)[0]  # left for the sender to backdate
    for kind, span in (("calls", HOT_CALLER_SPAN_MS), ("transfers", HOT_PAYEE_SPAN_MS)):
        assert all(0 <= a < span for a in ages[kind])
        assert min(ages[kind]) < 0.02 * span and max(ages[kind]) > 0.98 * span
        assert sum(a > b for a, b in zip(ages[kind], ages[kind][1:])) > len(ages[kind]) // 3  # out of order


def test_in_shadow_the_hot_keys_fire_their_rules_and_send_nothing(tmp_path: Path) -> None:
    """The benchmark's ground truth for a hot key's event, no command, holds under its default policy."""
    policy = load_policy(bench_policy(tmp_path, "shadow"))
    traffic = Traffic(Population(2000, 50), hot_keys=True)
    decode = decoders()
    hot = [decoded(decode, kind, value) for seq in range(3000) if traffic.hot_kind(seq)
           for value, _, kind, _, _ in [traffic.event(seq, "2026-11-29T00:00:00.000Z")]]
    transfers = [e for e in hot if hasattr(e, "payee")]
    calls = [e for e in hot if hasattr(e, "callee")]
    ms = lambda e: int(e.occurred_at.timestamp() * 1000)  # noqa: E731
    # the windows' answers as the worker gets them from Redis, with every hot event in: the reference's
    mule, burst = policy.params("mule_inflow"), policy.params("call_burst")
    inflow = sorted((ms(e), e.payer.account.key) for e in transfers)
    outbound = sorted((ms(e), e.callee.key) for e in calls)
    obs = Observations(counts={
        "inflow": {e.event_id: n for e in transfers
                   if (n := most_distinct(inflow, ms(e), mule.window_minutes * 60_000)) >= mule.min_payers},
        "outbound": {e.event_id: n for e in calls
                     if (n := most_distinct(outbound, ms(e), burst.window_seconds * 1000)) >= burst.min_callees}})
    now = datetime(2026, 11, 29, tzinfo=timezone.utc)
    fired = set()
    for event in hot:
        decide = engine.decide_call if hasattr(event, "callee") else engine.decide_transfer
        decision = decide(event, Context(now, {}, obs), policy).decision
        assert decision.commands == () and decision.reports == ()
        fired |= {m.rule for m in decision.matches if m.mode == "shadow"}
    assert {"call_burst", "mule_inflow"} <= fired


@pytest.mark.parametrize("rate", [None, 20_000.0])
def test_the_generator_sends_hot_key_events_backdated_and_counts_them(monkeypatch: pytest.MonkeyPatch,
                                                                      rate: float | None) -> None:
    """Paced traffic is rendered ahead and stamped while sending; a hot key's event gets its own, earlier time."""
    import queue

    from load_tests import generate

    sent: list[tuple[str, bytes]] = []

    class Producer:
        def __init__(self, conf: dict) -> None: ...
        def list_topics(self, topic: str, timeout: float) -> None: ...
        def poll(self, timeout: float) -> None: ...
        def flush(self, timeout: float) -> None: ...
        def produce(self, topic: str, value: bytes, key: bytes) -> None:
            sent.append((topic, value))

    monkeypatch.setattr(generate, "Producer", Producer)
    out: queue.Queue = queue.Queue()
    generate._produce(1, "", {"calls": "c", "transfers": "t"}, 1200, rate, 0.05, 2000, 50, "s", "json", True, 2,
                      out)  # type: ignore[arg-type]
    result = out.get_nowait()
    assert result.hot == {"caller_events": 100, "payee_events": 20}
    assert not set(result.expected) & {f"s1-{seq}" for seq in range(0, 1200, 12)}
    traffic = Traffic(Population(2000, 50), hot_keys=True, lane=1, lanes=2)
    decode = decoders()
    events = [decoded(decode, "calls" if topic == "c" else "transfers", value) for topic, value in sent]
    latest = max(e.occurred_at for e in events)
    for seq, event in enumerate(events):
        ago = traffic.backdate_ms(seq)
        assert (ago > 0) == bool(traffic.hot_kind(seq))
        assert abs((latest - event.occurred_at) / timedelta(milliseconds=1) - ago) < 5_000  # sent within seconds


def test_the_traffic_includes_e_wallet_payees_and_listed_wallets_are_held() -> None:
    population = Population(customers=2000, listed=40)
    listed = {item.key: item.status for item in population.listed()}
    assert sum(k.startswith("wallet:") for k in listed) == 10
    decode = decoders()
    traffic = Traffic(population, listed_share=0.3)
    wallets = held = 0
    for seq in range(600):
        value, _, kind, expected, event_id = traffic.event(seq, "2026-11-29T00:00:00.000Z")
        event = decoded(decode, kind, value)
        if kind == "transfers" and event.payee.wallet is not None:
            wallets += 1
            held += expected == ("HOLD_TRANSFER",)
            assert (traffic.subjects.get(event_id) == event.payee.wallet.key) == bool(expected)
    assert 20 < wallets < 60 and held > 0  # one transfer in ten pays an e-wallet
