"""The policy: which rules run, with which parameters, in which mode, and what outcomes do.

A policy is data, a YAML file (the shipped default is ``rules/policy.yaml``;
``SEKAT_POLICY_FILE`` points at another)::

    version: "2026-11-29.1"          # cited in every decision
    rules:
      mule_inflow:                   # a rule id from the registry
        mode: enforce                # enforce | shadow
        enabled: true                # optional; a rule not listed is off
        params: {min_payers: 5, window_minutes: 30}
    actions:                         # outcome -> commands, per stream
      transfers: {BLOCK: [HOLD_TRANSFER, FREEZE_ACCOUNT], HOLD: [HOLD_TRANSFER], LABEL: []}
      calls: {BLOCK: [BLOCK_CALL], HOLD: [LABEL_CALL], LABEL: [LABEL_CALL]}
      sms: {BLOCK: [BLOCK_SMS], HOLD: [LABEL_SMS], LABEL: [LABEL_SMS]}   # optional; these when absent
    holds:                           # optional: how long each hold lasts, in minutes (its ``hold_until``)
      HOLD_TRANSFER: 1440
      HOLD_AMOUNT: 4320

``parse_policy`` validates everything and raises ``PolicyError`` naming the
rule and field at fault; a policy is used whole or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from sekat.errors import PolicyError
from sekat.records import Action
from sekat.rules import (blocklist_match, call_burst, cross_channel, follow_money, mule_inflow, sender_impersonation,
                         spoofed_caller, wangiri)
from sekat.rules.outcome import Outcome
from sekat.rules.registry import STREAMS, Registry, RuleSpec, parse_params

DEFAULT_POLICY_FILE = Path(__file__).with_name("policy.yaml")
MODES = ("enforce", "shadow")
_BANK_ACTIONS = (Action.HOLD_TRANSFER, Action.FREEZE_ACCOUNT, Action.HOLD_AMOUNT)
_TELCO_ACTIONS = (Action.BLOCK_CALL, Action.LABEL_CALL)
_SMS_ACTIONS = (Action.BLOCK_SMS, Action.LABEL_SMS)
# A policy written before the SMS stream existed names no ``actions.sms``: it gets these.
DEFAULT_SMS_ACTIONS = {"BLOCK": ["BLOCK_SMS"], "HOLD": ["LABEL_SMS"], "LABEL": ["LABEL_SMS"]}
_ACTING = (Outcome.LABEL, Outcome.HOLD, Outcome.BLOCK)
HOLDS = (Action.HOLD_TRANSFER, Action.HOLD_AMOUNT)  # the commands that carry ``hold_until``
DEFAULT_HOLD_MINUTES = {Action.HOLD_TRANSFER: 24 * 60, Action.HOLD_AMOUNT: 3 * 24 * 60}
MAX_HOLD_MINUTES = 30 * 24 * 60


def default_registry() -> Registry:
    """Every rule type shipped with Sekat; a duplicate id fails here, at start-up."""
    registry = Registry()
    for module in (blocklist_match, mule_inflow, cross_channel, spoofed_caller, call_burst, follow_money, wangiri,
                   sender_impersonation):
        registry.register(module.SPEC)
    return registry


@dataclass(frozen=True)
class RuleConfig:
    spec: RuleSpec[Any]
    mode: str
    params: Any


@dataclass(frozen=True)
class Policy:
    version: str
    rules: tuple[RuleConfig, ...]
    actions: Mapping[str, Mapping[Outcome, tuple[Action, ...]]]
    source: str = ""
    # how long each hold lasts (seconds): a hold command carries ``hold_until`` = decided + this, and a lien
    # still in place then is released (``release.sweep``)
    holds: Mapping[Action, int] = field(default_factory=lambda: {a: m * 60 for a, m in DEFAULT_HOLD_MINUTES.items()})

    def hold_s(self, action: Action) -> int:
        return self.holds[action]

    def for_stream(self, stream: str) -> tuple[RuleConfig, ...]:
        return self._by_stream.get(stream, ())

    def evaluators(self, stream: str) -> tuple[tuple[RuleConfig, Any], ...]:
        """(rule, its evaluate function) for each rule that judges ``stream``."""
        return self._evaluators.get(stream, ())

    def writers(self, stream: str) -> tuple[tuple[RuleConfig, Any], ...]:
        """(rule, its writer) for each rule that writes state on ``stream``."""
        return self._writers.get(stream, ())

    def keeping_state(self, stream: str) -> tuple[RuleConfig, ...]:
        """The rules that read or write state for ``stream`` (a rule may write on a stream it does not judge)."""
        return self._keeping.get(stream, ())

    def params(self, rule_id: str) -> Any | None:
        """The parameters of ``rule_id`` if it is enabled (any mode), else None."""
        return self._params.get(rule_id)

    # Both are asked once or more per event: worked out once per policy (a frozen dataclass keeps
    # cached_property's value in the instance dict, outside the fields that compare and hash).
    @cached_property
    def _by_stream(self) -> dict[str, tuple[RuleConfig, ...]]:
        return {stream: tuple(r for r in self.rules if stream in r.spec.evaluators) for stream in STREAMS}

    @cached_property
    def _evaluators(self) -> dict[str, tuple[tuple[RuleConfig, Any], ...]]:
        return {stream: tuple((r, r.spec.evaluators[stream]) for r in self.for_stream(stream)) for stream in STREAMS}

    @cached_property
    def _writers(self) -> dict[str, tuple[tuple[RuleConfig, Any], ...]]:
        return {stream: tuple((r, r.spec.writers[stream]) for r in self.rules if stream in r.spec.writers)
                for stream in STREAMS}

    @cached_property
    def _keeping(self) -> dict[str, tuple[RuleConfig, ...]]:
        return {stream: tuple(r for r in self.rules if stream in r.spec.writers
                              or any(s.stream == stream for s in r.spec.state)) for stream in STREAMS}

    @cached_property
    def _params(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for rule in self.rules:
            out.setdefault(rule.spec.id, rule.params)
        return out

    def describe(self) -> str:
        return ", ".join(f"{r.spec.ref}:{r.mode}" for r in self.rules) or "no rules"


def parse_policy(data: Any, registry: Registry | None = None, source: str = "") -> Policy:
    registry = registry or default_registry()
    if not isinstance(data, Mapping):
        raise PolicyError("", "", f"must be a YAML mapping with 'version', 'rules' and 'actions', "
                                  f"got {type(data).__name__}")
    unknown = set(data) - {"version", "rules", "actions", "holds"}
    if unknown:
        raise PolicyError("", sorted(map(str, unknown))[0],
                          "unknown top-level key (known: version, rules, actions, holds)")
    version = data.get("version")
    if version is None or isinstance(version, bool) or not str(version).strip():
        raise PolicyError("", "version", "is required (a label cited in every decision)")
    rules_raw = data.get("rules") or {}
    if not isinstance(rules_raw, Mapping):
        raise PolicyError("", "rules", "must be a mapping of rule id to its settings")
    rules: list[RuleConfig] = []
    for rule_id, conf in rules_raw.items():
        rule_id = str(rule_id)
        spec = registry.get(rule_id)
        if spec is None:
            raise PolicyError(rule_id, "", f"no such rule (known: {', '.join(registry.ids())})")
        if conf is None:
            conf = {}
        if not isinstance(conf, Mapping):
            raise PolicyError(rule_id, "", "must be a mapping with mode, enabled and params")
        extra = set(conf) - {"mode", "enabled", "params"}
        if extra:
            raise PolicyError(rule_id, sorted(map(str, extra))[0], "unknown field (known: mode, enabled, params)")
        enabled = conf.get("enabled", True)
        if not isinstance(enabled, bool):
            raise PolicyError(rule_id, "enabled", f"must be true or false, got {enabled!r}")
        mode = conf.get("mode", "enforce")
        if mode not in MODES:
            raise PolicyError(rule_id, "mode", f"must be 'enforce' or 'shadow', got {mode!r}")
        params = parse_params(rule_id, spec.params, conf.get("params"))
        if enabled:
            rules.append(RuleConfig(spec, str(mode), params))
    return Policy(str(version).strip(), tuple(rules), _parse_actions(data.get("actions")), source,
                  _parse_holds(data.get("holds")))


def _parse_holds(raw: Any) -> Mapping[Action, int]:
    """``holds``: minutes per hold action (HOLD_TRANSFER, HOLD_AMOUNT), each 1 to 30 days; absent ones default."""
    minutes = dict(DEFAULT_HOLD_MINUTES)
    if raw is None:
        return {a: m * 60 for a, m in minutes.items()}
    if not isinstance(raw, Mapping):
        raise PolicyError("", "holds", "must map HOLD_TRANSFER and HOLD_AMOUNT to minutes")
    for name, value in raw.items():
        where = f"holds.{name}"
        try:
            action = Action(str(name))
        except ValueError:
            action = None
        if action not in HOLDS:
            raise PolicyError("", where, f"unknown hold (known: {', '.join(a.value for a in HOLDS)})")
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_HOLD_MINUTES:
            raise PolicyError("", where, f"must be a whole number of minutes from 1 to {MAX_HOLD_MINUTES}, "
                                         f"got {value!r}")
        minutes[action] = value
    return {a: m * 60 for a, m in minutes.items()}


def _parse_actions(raw: Any) -> Mapping[str, Mapping[Outcome, tuple[Action, ...]]]:
    if not isinstance(raw, Mapping):
        raise PolicyError("", "actions", "must map each stream (transfers, calls) to outcome -> actions")
    out: dict[str, dict[Outcome, tuple[Action, ...]]] = {}
    for stream in STREAMS:
        table = raw.get(stream, DEFAULT_SMS_ACTIONS if stream == "sms" else None)
        if not isinstance(table, Mapping):
            raise PolicyError("", f"actions.{stream}", "is required: a mapping of LABEL, HOLD, BLOCK to actions")
        allowed = _BANK_ACTIONS if stream == "transfers" else _SMS_ACTIONS if stream == "sms" else _TELCO_ACTIONS
        parsed: dict[Outcome, tuple[Action, ...]] = {}
        for name, actions in table.items():
            where = f"actions.{stream}.{name}"
            try:
                outcome = Outcome[str(name)]
            except KeyError:
                raise PolicyError("", where, "unknown outcome (use LABEL, HOLD or BLOCK)") from None
            if outcome not in _ACTING:
                raise PolicyError("", where, "ALLOW never acts")
            if not isinstance(actions, list):
                raise PolicyError("", where, "must be a list of actions")
            try:
                acts = tuple(Action(a) for a in actions)
            except ValueError:
                raise PolicyError("", where, f"unknown action in {actions} (allowed: "
                                             f"{', '.join(a.value for a in allowed)})") from None
            bad = [a.value for a in acts if a not in allowed]
            if bad:
                raise PolicyError("", where, f"{', '.join(bad)} cannot be sent for {stream}")
            parsed[outcome] = acts
        missing = [o.name for o in _ACTING if o not in parsed]
        if missing:
            raise PolicyError("", f"actions.{stream}.{missing[0]}", "is required (use [] for no command)")
        out[stream] = parsed
    return out


def load_policy(path: str | Path, registry: Registry | None = None) -> Policy:
    """Read and validate a policy file (start-up and hot reload; not on the hot path)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError("", "", f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError("", "", f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse_policy(data, registry, str(path))
