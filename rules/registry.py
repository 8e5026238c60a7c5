"""The rule registry: every rule type Sekat knows, by id, with its version and parameters.

A rule is a small pure function ``evaluate(event, ctx, params) -> list[Finding]``
plus a frozen dataclass of parameters whose fields carry their bounds. The
policy file (``rules/policy.py``) enables rules by id and sets parameters,
which ``parse_params`` validates into that dataclass; registering two rules
with one id is an error at start-up.

A rule sees only what the shell gives it (``Context``): the blocklist entries
looked up for the batch, the windowed state read from Redis for the batch
(``Observations``), and ``now``. It never reads the clock or does I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Generic, TypeVar

from sekat.errors import PolicyError
from sekat.records import Entry
from sekat.rules.outcome import Outcome

STREAMS = ("transfers", "calls")


@dataclass(frozen=True, slots=True)
class CallWarning:
    """A call that warned a customer: from a listed caller, or flagged by an enforce rule."""

    at_ms: int
    caller: str  # E.164 of the caller
    event_id: str  # the call's event id, cited in the transfer's reasons
    why: str  # reason code of what made the call suspicious


@dataclass(frozen=True, slots=True)
class TrailMark:
    """An account the money trail reached (``sekat.rules.follow_money``): hop, when, how much, from where."""

    hop: int  # 0: the account was just held/frozen itself; n: n transfers away from such an account
    at_ms: int  # event time the tainted money reached it
    amount: Decimal  # the disputed amount it received (what a lien on it may hold)
    currency: str
    parent: str  # key of the account the money came from ("" for hop 0)
    event_id: str  # the transfer that carried it

    def encode(self) -> str:
        return f"{self.hop}|{self.at_ms}|{self.amount}|{self.currency}|{self.parent}|{self.event_id}"

    @classmethod
    def decode(cls, raw: str) -> "TrailMark | None":
        try:
            hop, at, amount, currency, parent, event_id = raw.split("|", 5)
            return cls(int(hop), int(at), Decimal(amount), currency, parent, event_id)
        except (ValueError, InvalidOperation):
            return None  # written by another version: not a mark this worker can use


@dataclass(frozen=True)
class Observations:
    """Windowed state the shell read from Redis for one batch (event-time milliseconds).

    ``inflow`` and ``outbound`` already hold this batch's own observations: the
    shell adds them before it reads, so workers sharing a key see each other.
    """

    inflow: Mapping[str, Sequence[tuple[int, str]]] = field(default_factory=dict)  # payee key -> (ms, payer key)
    outbound: Mapping[str, Sequence[tuple[int, str]]] = field(default_factory=dict)  # caller key -> (ms, callee key)
    warnings: Mapping[str, Sequence[CallWarning]] = field(default_factory=dict)  # customer phone key -> calls
    paid_before: AbstractSet[tuple[str, str]] = frozenset()  # (payer key, payee key) seen before this batch
    auto_reported: AbstractSet[str] = frozenset()  # "rule|identifier key" already reported automatically
    trail: Mapping[str, TrailMark] = field(default_factory=dict)  # account key -> mark (payers and payees)


@dataclass(frozen=True)
class Context:
    now: datetime
    lookups: Mapping[str, Entry]
    obs: Observations = field(default_factory=Observations)
    braked: AbstractSet[str] = frozenset()  # brake targets in shadow ("rule:id", "entry:key", "source:X")


@dataclass(frozen=True, slots=True)
class AutoReport:
    """A request to file a ``reported`` entry on the identifier of the finding that carries it."""

    reason: str
    ttl_days: int
    source: str = "sekat-rule"  # the reporting source the entry names
    case_ref: str = ""  # empty: the engine cites the event ("transfers/t-1")


@dataclass(frozen=True, slots=True)
class Finding:
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


P = TypeVar("P")
Evaluate = Callable[[Any, Context, Any], list[Finding]]


@dataclass(frozen=True)
class RuleSpec(Generic[P]):
    id: str
    version: int
    params: type[P]
    evaluators: Mapping[str, Evaluate]  # stream (transfers | calls) -> evaluate
    summary: str = ""

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"


class Registry:
    def __init__(self) -> None:
        self._rules: dict[str, RuleSpec[Any]] = {}

    def register(self, spec: RuleSpec[Any]) -> RuleSpec[Any]:
        if spec.id in self._rules:
            raise PolicyError(spec.id, "", f"rule id registered twice ({self._rules[spec.id].ref} and {spec.ref})")
        if not spec.evaluators or set(spec.evaluators) - set(STREAMS):
            raise PolicyError(spec.id, "stream", f"evaluators must be for {' or '.join(STREAMS)}")
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


def choices(default: tuple[str, ...], allowed: tuple[str, ...]) -> Any:
    return field(default=default, metadata={"choices": allowed})


@dataclass(frozen=True, slots=True)
class StateWrite:
    """A state update the shell writes back after the batch's output is acknowledged.

    kinds: ``warned`` (zset: customer phone -> warning call), ``paid`` (set:
    payer -> payees paid), ``reported`` (marker: rule|identifier reported
    automatically), ``trail`` (account key -> ``TrailMark.encode()``).
    """

    kind: str
    key: str
    member: str = ""
    score: int = 0
    ttl_s: int = 0
