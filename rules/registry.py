"""The rule registry: every rule type Sekat knows, by id, with its version and parameters.

A rule is a small pure function ``evaluate(event, ctx, params) -> list[Finding]``
plus a frozen dataclass of parameters whose fields carry their bounds. The
policy file (``rules/policy.py``) enables rules by id and sets parameters,
which ``parse_params`` validates into that dataclass; registering two rules
with one id is an error at start-up.

A rule sees only what the shell gives it (``Context``): the blocklist entries
looked up for the batch, the state read from Redis for the batch
(``Observations``), and ``now``. It never reads the clock or does I/O.

A rule that keeps state says so on its spec: ``state`` declares what the shell
reads for a batch (``Window``: distinct parties per key on event-time windows;
``Values``: a value per key), and ``writers`` return what an event writes back
(``StateWrite``). The shell (``sekat.streams.state``) serves any declaration,
so adding a stateful rule is one new module here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Generic, TypeVar

import msgspec

from sekat.errors import PolicyError
from sekat.records import Entry
from sekat.rules.outcome import Outcome

STREAMS = ("transfers", "calls", "sms")


AUTO = "auto"  # value family of the engine's marks "rule|identifier": a rule reported this identifier already


@dataclass(frozen=True)
class Window:
    """State a rule keeps: the distinct parties seen per key, on event-time windows (``sekat.rules.windows``).

    For each event of a batch the shell adds ``party(event)`` at the event's time to ``key(event)``'s window
    (``None`` from either: the event is not counted), then asks whether some window of
    ``width_ms(params)`` containing the event holds at least ``threshold(params)`` distinct parties, the
    event's own included. ``Observations.count(family, event_id)`` is the answer: the threshold when it
    does, 0 when it does not. ``family`` names the state; no two rules may share one. ``when(event, params)``,
    if given, picks the events the window counts by the rule's parameters (others are neither counted nor
    answered).
    """

    family: str
    stream: str
    key: Callable[[Any], str | None]
    party: Callable[[Any], str | None]
    width_ms: Callable[[Any], int]
    threshold: Callable[[Any], int]
    when: Callable[[Any, Any], bool] | None = None


@dataclass(frozen=True)
class Values:
    """State a rule keeps: one string value per key of ``family``, read for a whole batch at once.

    ``keys(event)`` names the keys an event needs; ``Observations.value(family, key)`` gives what is
    stored (``None``: nothing). Values are written by the rule's writer as ``StateWrite(family, key, value)``.
    """

    family: str
    stream: str
    keys: Callable[[Any], Iterable[str]]


State = Window | Values


@dataclass(frozen=True)
class Observations:
    """The rule state the shell read for one batch: window answers and values, by family.

    A batch's own events are in its windows already: the shell adds them before it asks, so workers
    sharing a key see each other, and an event is judged with the whole batch in the window.
    """

    counts: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # window family -> event_id -> count
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # value family -> key -> value

    def count(self, family: str, event_id: str) -> int:
        """Distinct parties in the fullest window holding the event, when it reaches the threshold, else 0."""
        got = self.counts.get(family)
        return got.get(event_id, 0) if got else 0

    def value(self, family: str, key: str) -> str | None:
        got = self.values.get(family)
        return got.get(key) if got else None


@dataclass(frozen=True)
class Context:
    now: datetime
    lookups: Mapping[str, Entry]
    obs: Observations = field(default_factory=Observations)
    braked: AbstractSet[str] = frozenset()  # brake targets in shadow ("rule:id", "entry:key", "source:X")


# Built for every match and every state write: msgspec structs are ~10x cheaper to build than frozen dataclasses.
class AutoReport(msgspec.Struct, frozen=True):
    """A request to file a ``reported`` entry on the identifier of the finding that carries it."""

    reason: str
    ttl_days: int
    source: str = "sekat-rule"  # the reporting source the entry names
    case_ref: str = ""  # empty: the engine cites the event ("transfers/t-1")


class Finding(msgspec.Struct, frozen=True):
    """What one rule says about one event."""

    outcome: Outcome
    code: str  # stable reason code, e.g. ``mule-inflow``
    reason: str  # human-readable, cites the evidence
    identifier: str = ""  # key of the identifier acted on (``account:...``/``phone:...``)
    protected: bool = False  # an emergency/short number: never acted on
    entry: Entry | None = None  # the blocklist entry behind a blocklist match
    report: AutoReport | None = None  # filed on ``identifier``
    amount: Decimal | None = None  # the disputed amount on ``identifier``: what a HOLD_AMOUNT lien holds
    currency: str = ""
    causes: tuple[str, ...] = ()  # entry keys whose revocation or expiry releases the lien (HOLD_AMOUNT)


P = TypeVar("P")
Evaluate = Callable[[Any, Context, Any], list[Finding]]
Enforced = Sequence[tuple[str, Finding]]  # (rule id, finding) of every enforce rule that matched the event
Write = Callable[[Any, Context, Any, Enforced], list["StateWrite"]]


@dataclass(frozen=True)
class RuleSpec(Generic[P]):
    id: str
    version: int
    params: type[P]
    evaluators: Mapping[str, Evaluate]  # stream (transfers | calls | sms) -> evaluate
    summary: str = ""
    state: tuple[State, ...] = ()  # what the rule keeps between events (read for each batch before deciding)
    writers: Mapping[str, Write] = field(default_factory=dict)  # stream -> the state writes an event makes
    # True when the rule finds nothing in an event none of whose identifiers is in ``Context.lookups`` (a
    # blocklist rule): the engine then knows the answer for such an event without running it (``listed_only``).
    needs_listed: bool = False

    def streams(self) -> set[str]:
        return set(self.evaluators) | set(self.writers) | {s.stream for s in self.state}

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"


class Registry:
    def __init__(self) -> None:
        self._rules: dict[str, RuleSpec[Any]] = {}

    def register(self, spec: RuleSpec[Any]) -> RuleSpec[Any]:
        if spec.id in self._rules:
            raise PolicyError(spec.id, "", f"rule id registered twice ({self._rules[spec.id].ref} and {spec.ref})")
        if not spec.evaluators or spec.streams() - set(STREAMS):
            raise PolicyError(spec.id, "stream", f"evaluators, writers and state must be for {' or '.join(STREAMS)}")
        for state in spec.state:
            if not isinstance(state, Window):
                continue
            for other in self._rules.values():
                if any(isinstance(s, Window) and s.family == state.family for s in other.state):
                    raise PolicyError(spec.id, "state", f"window family {state.family!r} is {other.id}'s already")
        self._rules[spec.id] = spec
        return spec

    def get(self, rule_id: str) -> RuleSpec[Any] | None:
        return self._rules.get(rule_id)

    def ids(self) -> list[str]:
        return sorted(self._rules)


def bounded(default: Any, low: Any = None, high: Any = None) -> Any:
    """A parameter field with bounds, checked by ``parse_params``."""
    return field(default=default, metadata={"low": low, "high": high})


def parse_params(rule_id: str, cls: type[P], raw: Any) -> P:
    """Build ``cls`` from the policy's ``params`` mapping; PolicyError names rule and field."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise PolicyError(rule_id, "params", f"must be a mapping, got {type(raw).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for name in raw:
        if name not in known:
            raise PolicyError(rule_id, f"params.{name}", f"unknown parameter (known: {', '.join(sorted(known))})")
    values: dict[str, Any] = {}
    for name, f in known.items():
        if name not in raw:
            continue
        values[name] = _coerce(rule_id, f"params.{name}", f, raw[name])
    return cls(**values)


def _coerce(rule_id: str, where: str, f: dataclasses.Field[Any], value: Any) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise PolicyError(rule_id, where, f"must be a whole number, got {value!r}")
        out: Any = value
    elif kind == "bool":
        if not isinstance(value, bool):
            raise PolicyError(rule_id, where, f"must be true or false, got {value!r}")
        return value
    elif kind in ("Decimal", "Decimal | None"):
        if value is None and kind.endswith("None"):
            return None
        if isinstance(value, bool) or not isinstance(value, (int, str, float)):
            raise PolicyError(rule_id, where, f"must be an amount such as \"5000.00\", got {value!r}")
        try:
            out = Decimal(str(value))
        except InvalidOperation:
            raise PolicyError(rule_id, where, f"must be an amount such as \"5000.00\", got {value!r}") from None
        if not out.is_finite():
            raise PolicyError(rule_id, where, "must be finite")
    elif kind == "str":
        if not isinstance(value, str) or not value.strip():
            raise PolicyError(rule_id, where, f"must be a non-empty string, got {value!r}")
        allowed = f.metadata.get("choices")
        if allowed and value.strip() not in allowed:
            raise PolicyError(rule_id, where, f"must be one of {', '.join(allowed)}, got {value!r}")
        return value.strip()
    elif kind == "tuple[str, ...]":
        if isinstance(value, str) or not isinstance(value, Sequence) or not value \
                or not all(isinstance(v, str) and v.strip() for v in value):
            raise PolicyError(rule_id, where, f"must be a non-empty list of strings, got {value!r}")
        allowed = f.metadata.get("choices")
        if allowed:
            bad = [v for v in value if v not in allowed]
            if bad:
                raise PolicyError(rule_id, where, f"unknown value(s) {bad} (allowed: {', '.join(allowed)})")
        return tuple(v.strip() for v in value)
    else:  # a rule declared a type this parser does not know: a bug, caught by the registry tests
        raise PolicyError(rule_id, where, f"unsupported parameter type {kind}")
    low, high = f.metadata.get("low"), f.metadata.get("high")
    if low is not None and out < low or high is not None and out > high:
        raise PolicyError(rule_id, where, f"must be between {low} and {high}, got {value!r}")
    return out


def choices(default: tuple[str, ...] | str, allowed: tuple[str, ...]) -> Any:
    """A parameter whose value (a string) or values (a list of strings) must be among ``allowed``."""
    return field(default=default, metadata={"choices": allowed})


class StateWrite(msgspec.Struct, frozen=True):
    """A state update the shell writes back after the batch's output is acknowledged.

    ``kind`` is a ``Values`` family: ``member`` becomes the value of ``key`` for ``ttl_s`` seconds. Of one
    batch's writes to one key, the one with the highest ``score`` (the latest on ties) is written.
    """

    kind: str
    key: str
    member: str = "1"
    score: int = 0
    ttl_s: int = 0
