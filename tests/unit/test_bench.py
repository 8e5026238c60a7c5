"""The end-to-end benchmark's own pieces: which policy it runs, how it sums up a py-spy profile, what it reports
of the safety brake, and its latency series by second."""

from pathlib import Path

from load_tests.bench import bench_policy, per_second_p99, policy_rules, top_functions, worker_pauses
from load_tests.harness import brake_figures
from sekat.rules.policy import DEFAULT_POLICY_FILE


def test_the_default_policy_is_the_shipped_one_with_every_behaviour_rule_in_shadow(tmp_path: Path) -> None:
    shipped = policy_rules(str(DEFAULT_POLICY_FILE))
    ran = policy_rules(bench_policy(tmp_path, "shadow"))
    assert set(ran) == set(shipped) and "blocklist_match" in ran and len(ran) > 1
    assert ran == {rule: "enforce" if rule == "blocklist_match" else "shadow" for rule in shipped}
    assert policy_rules(bench_policy(tmp_path, "blocklist-only")) == {"blocklist_match": "enforce"}
    own = tmp_path / "own.yaml"
    own.write_text("rules:\n  blocklist_match: {}\n  call_burst: {mode: shadow}\n  mule_inflow: {enabled: false}\n")
    assert bench_policy(tmp_path, str(own)) == str(own)
    assert policy_rules(str(own)) == {"blocklist_match": "enforce", "call_burst": "shadow"}


def test_the_profile_summary_leaves_out_waits_and_counts_inclusive_shares_once_a_sample(tmp_path: Path) -> None:
    stacks = tmp_path / "profile.txt"
    stacks.write_text(
        "<module> (sekat/cli.py:3);run (asyncio/runners.py:118);decide (sekat/rules/engine.py:145) 6\n"
        "<module> (sekat/cli.py:3);run (asyncio/runners.py:118);walk (x.py:1);walk (x.py:2) 3\n"
        "<module> (sekat/cli.py:3);run (asyncio/runners.py:120) 1\n"
        "_bootstrap (threading.py:1002);_worker (concurrent/futures/thread.py:81) 30\n")  # a thread waiting
    out = tmp_path / "top.txt"
    assert top_functions(stacks, out) == 40
    text = out.read_text()
    assert "30 (75.0%) end in a blocking wait" in text and "_worker" not in text
    inclusive, own = text.split("by self share")
    assert " 100.0%       10  sekat/cli.py:<module>" in inclusive
    assert "  60.0%        6  sekat/rules/engine.py:decide" in inclusive
    assert "  30.0%        3  x.py:walk" in inclusive  # recursion counts a sample once
    assert own.index("sekat/rules/engine.py:decide") < own.index("x.py:walk") < own.index("asyncio/runners.py:run")
    assert "sekat/cli.py:<module>" not in own


def test_the_brake_figures_count_trips_by_dimension_and_give_recall_with_and_without_braked_entries() -> None:
    # Given four listed events, two of them on an entry the brake tripped (one acted on before the trip), and
    # a trip of a rule, when the run's figures are made, then recall is over all four and recall_unbraked over
    # the two whose entry was not braked.
    mule, number = "account:CIBBMYKL:8001234567", "phone:+60123456789"
    expected = {"b-1": (("HOLD_TRANSFER",), 0), "b-2": (("HOLD_TRANSFER",), 0),
                "b-3": (("BLOCK_CALL",), 0), "b-4": (("HOLD_TRANSFER", "FREEZE_ACCOUNT"), 0)}
    subjects = {"b-1": mule, "b-2": mule, "b-3": number, "b-4": "account:MBBEMYKL:514012345678"}
    seen = [("b-1", "HOLD_TRANSFER", 5), ("b-3", "BLOCK_CALL", 7), ("b-4", "HOLD_TRANSFER", 9)]
    tripped = {f"entry:{mule}": {"status": "reported"}, "rule:mule_inflow": {}}
    figures = brake_figures(tripped, expected, seen, subjects)
    assert figures == {"brake_trips": 2, "brake_trips_by_dimension": {"entry": 1, "rule": 1, "source": 0},
                       "braked_targets": [f"entry:{mule}", "rule:mule_inflow"], "recall": 0.5,
                       "recall_unbraked": 0.5, "braked_events": 2}
    seen.append(("b-4", "FREEZE_ACCOUNT", 11))
    assert brake_figures(tripped, expected, seen, subjects)["recall_unbraked"] == 1.0
    assert brake_figures({}, expected, seen, subjects) | {"recall": None} == {
        "brake_trips": 0, "brake_trips_by_dimension": {"entry": 0, "rule": 0, "source": 0}, "braked_targets": [],
        "recall": None, "recall_unbraked": 0.75, "braked_events": 0}


def test_the_latency_series_gives_each_second_its_own_p99_by_when_the_input_was_sent() -> None:
    points = [(100.0 + i / 100, 5.0) for i in range(100)] + [(101.5, 40.0)] + [(103.2, 7.0)]
    assert per_second_p99(points) == [(100, 100, 5.0), (101, 1, 40.0), (103, 1, 7.0)]


def test_the_worker_pauses_are_read_from_its_histograms_with_those_over_10_ms() -> None:
    page = (b'sekat_gc_pause_seconds_bucket{generation="2",le="0.005"} 3.0\n'
            b'sekat_gc_pause_seconds_bucket{generation="2",le="0.01"} 4.0\n'
            b'sekat_gc_pause_seconds_bucket{generation="2",le="+Inf"} 6.0\n'
            b'sekat_gc_pause_seconds_count{generation="2"} 6.0\n'
            b'sekat_gc_pause_seconds_sum{generation="2"} 0.5\n'
            b'sekat_periodic_task_seconds_bucket{le="0.01",task="sekat_reload_policy"} 10.0\n'
            b'sekat_periodic_task_seconds_bucket{le="+Inf",task="sekat_reload_policy"} 10.0\n'
            b'sekat_periodic_task_seconds_count{task="sekat_reload_policy"} 10.0\n'
            b'sekat_periodic_task_seconds_sum{task="sekat_reload_policy"} 0.001\n')
    assert worker_pauses(page) == {
        "gc": {"2": {"count": 6.0, "seconds": 0.5, "over_10ms": 2.0}},
        "periodic": {"sekat_reload_policy": {"count": 10.0, "seconds": 0.001, "over_10ms": 0.0}}}
