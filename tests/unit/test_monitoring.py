"""Monitoring as code: the Prometheus rules, their promtool unit tests, the runbook and the Grafana dashboard.

promtool (Debian's prometheus package, installed by ``make bootstrap``) checks
and unit-tests the rules; every alert must have a test where it fires, a test
where it stays quiet, and a runbook entry. Every PromQL expression in the
dashboard and the rules must name a metric a worker really serves or a
recording rule that exists.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from sekat.api.metrics import ApiMetrics
from sekat.relay.metrics import RelayMetrics
from sekat.settings import Settings
from sekat.streams.app import create_app

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "metrics" / "prometheus"
RULE_FILES = [PROM / "recording.yml", PROM / "alerts.yml"]
RULE_TESTS = sorted((PROM / "tests").glob("*_test.yml"))
DASHBOARD = ROOT / "metrics" / "dashboards" / "sekat.json"
RUNBOOK = ROOT / "docs" / "runbook.md"
# Served by other parts of Sekat that are built in parallel (the policy engine owns rule matches).
DEFINED_ELSEWHERE = {"sekat_rule_matches_total"}
PROMETHEUS_BUILTIN = {"up", "scrape_duration_seconds"}

PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "inf", "nan", "le",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe, "promtool is missing: run `make bootstrap` (installs Debian's prometheus package)"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def names_in(expr: str) -> set[str]:
    """Metric and recording-rule names in a PromQL expression (functions, labels and keywords removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)                     # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)                               # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)                              # ranges, incl. $__rate_interval
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        rest = expr[m.end():].lstrip()
        if rest.startswith("("):
            continue                                                    # a function or aggregation
        if m.group(0).lower() in PROMQL_WORDS:
            continue
        if m.start() > 0 and (expr[m.start() - 1].isdigit() or expr[m.start() - 1] == "."):
            continue                                                    # exponent or unit of a number: 1e9
        names.add(m.group(0))
    return names


def served_metric_names() -> set[str]:
    """Every sample name a worker, an API process or a relay serves at /metrics (from their own registries, no
    broker needed)."""
    registry = CollectorRegistry()
    create_app(Settings(), registry)
    return sample_names(registry) | sample_names(ApiMetrics().registry) | sample_names(RelayMetrics(["X"]).registry)


def sample_names(registry: CollectorRegistry) -> set[str]:
    """The sample names of every family in ``registry``, with the suffixes its type adds."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
    names = set()
    for family in registry.collect():  # labelled metrics without children have no samples yet: use the family
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def load_rules() -> list[dict]:
    rules = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(group["rules"])
    return rules


def dashboard_exprs() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p.get("targets", [])]


def test_promtool_checks_the_rule_files_and_the_compose_config() -> None:
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    result = promtool("check", "config", str(PROM / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_of_alerts_and_recording_rules_pass() -> None:
    assert RULE_TESTS
    result = promtool("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_test_a_quiet_test_and_a_runbook_entry() -> None:
    alerts = [r["alert"] for r in load_rules() if "alert" in r]
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    runbook = RUNBOOK.read_text()
    headings = {re.sub(r"[^a-z0-9]", "", h.lower()) for h in re.findall(r"^#+ (.+)$", runbook, re.M)}
    assert set(alerts) >= {"SekatWorkerDown", "SekatConsumerLagGrowing", "SekatDecisionLatencyHigh",
                           "SekatDeadLetterSpike", "SekatBlocklistStale", "SekatThroughputZero"}
    for alert in alerts:
        assert alert in firing, f"{alert} has no promtool test where it fires"
        assert alert in quiet, f"{alert} has no promtool test where it stays quiet"
        assert alert.lower() in headings, f"{alert} has no section in docs/runbook.md"
    for rule in load_rules():
        if "alert" in rule:
            assert rule["annotations"]["runbook_url"] == f"docs/runbook.md#{rule['alert'].lower()}"


def test_the_agency_apis_metrics_are_alerted_on() -> None:
    """Its errors, its latency and its refusals (rate limits, oversize bodies) each reach someone."""
    alerted = set().union(*(names_in(r["expr"]) for r in load_rules() if "alert" in r))
    for needed in ("sekat_api_requests_total", "sekat_api_request_duration_seconds_bucket",
                   "sekat_api_rate_limited_total", "sekat_api_body_too_large_total"):
        assert needed in alerted, f"no alert reads {needed}"
    api_alerts = " ".join(r["expr"] for r in load_rules() if "alert" in r and "sekat_api_" in r["expr"])
    assert 'code=~"5.."' in api_alerts and 'limit="status_global"' in api_alerts
    assert 'up{job="sekat-api"}' in " ".join(r["expr"] for r in load_rules() if "alert" in r)


def test_the_relays_metrics_are_alerted_on_and_on_the_dashboard() -> None:
    """An institution that accepts nothing, and commands given up, each reach someone; on-call sees both."""
    alerted = set().union(*(names_in(r["expr"]) for r in load_rules() if "alert" in r))
    for needed in ("sekat_relay_pending_commands", "sekat_relay_last_accepted_timestamp_seconds",
                   "sekat_relay_given_up_total"):
        assert needed in alerted, f"no alert reads {needed}"
    exprs = " ".join(expr for _, expr in dashboard_exprs())
    for needed in ("sekat_relay_delivered_total", "sekat_relay_failed_attempts_total", "sekat_relay_given_up_total",
                   "sekat_relay_delivery_seconds_bucket", "sekat_relay_breaker_open"):
        assert needed in exprs, f"dashboard misses {needed}"


def test_names_in_reads_promql() -> None:
    assert names_in('sum by (job, le) (rate(sekat_x_bucket{le="+Inf", job=~"a|b"}[5m])) / on (job) job:y:rate1m'
                    ) == {"sekat_x_bucket", "job:y:rate1m"}
    assert names_in("max by (job) (sekat_target_attempts) / 86400 > 1e9 and up") == {"sekat_target_attempts", "up"}


def test_every_expression_in_the_rules_and_dashboard_names_something_that_exists() -> None:
    recorded = {r["record"] for r in load_rules() if "record" in r}
    known = served_metric_names() | recorded | PROMETHEUS_BUILTIN | DEFINED_ELSEWHERE
    exprs = [(r.get("record") or r["alert"], r["expr"]) for r in load_rules()] + dashboard_exprs()
    assert len(exprs) > 20
    for where, expr in exprs:
        unknown = names_in(expr) - known
        assert not unknown, f"{where}: {expr!r} names {sorted(unknown)}, which no worker serves"


def test_dashboard_covers_what_on_call_needs_and_uses_the_provisioned_datasource() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] and board["panels"]
    exprs = " ".join(expr for _, expr in dashboard_exprs())
    for needed in ("job_stream:sekat_events:rate1m", "job:sekat_target_events:rate",
                   "job:sekat_decision_latency_seconds:p50", "job:sekat_decision_latency_seconds:p99",
                   "job:sekat_decision_latency_seconds:p999", "sekat_commands_total", "sekat_blocklist_lookups_total",
                   "sekat_deadletters_total", "job_topic:sekat_consumer_lag_messages:sum",
                   "sekat_blocklist_replica_staleness_seconds", 'up{job="sekat"}', "sekat_rule_matches_total",
                   "sekat_stream_stalled_seconds", "sekat_brake_engaged", "sekat_brake_trips_total"):
        assert needed in exprs, f"dashboard misses {needed}"
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    uids = {p["datasource"]["uid"] for p in board["panels"]} | {
        t["datasource"]["uid"] for p in board["panels"] for t in p["targets"]}
    assert uids == {source["uid"]}
    [provider] = yaml.safe_load((provisioning / "dashboards" / "sekat.yml").read_text())["providers"]
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.monitoring.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"../metrics/dashboards:{provider['options']['path']}:ro" in mounts
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("expr", [e for _, e in dashboard_exprs()] if DASHBOARD.exists() else [])
def test_dashboard_expression_has_balanced_brackets(expr: str) -> None:
    for open_, close in ("()", "[]", "{}"):
        assert expr.count(open_) == expr.count(close), expr
