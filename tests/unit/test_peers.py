"""The peers of ``load_tests.peers`` do the job the benchmark judges: on the generator's own traffic, the commands
their shared ``job`` produces are exactly the ground truth's, and the check counts what is missing, doubled or
false."""

from __future__ import annotations

from collections import Counter

from load_tests.bench import blocklist_entries
from load_tests.peer_apps.job import decide, phone_key
from load_tests.peers import correctness
from load_tests.traffic import Population, Traffic


def test_the_job_gives_every_event_of_the_generators_traffic_exactly_its_expected_commands() -> None:
    population = Population(customers=5_000, listed=200)
    listed = {key: status for key, status, _ in blocklist_entries(population.listed(), 5_000)}
    traffic = Traffic(population, listed_share=0.2, seed=3)
    hits = 0
    for seq in range(5_000):
        value, _, kind, expected, event_id = traffic.event(seq, "2026-12-05T00:00:00.000Z")
        got = decide(kind, value, listed)
        assert sorted(c["action"] for c in got) == sorted(expected), (value, got)
        assert all(c["event_id"] == event_id for c in got)
        hits += bool(expected)
    assert hits > 500  # both kinds and both statuses were listed
    assert decide("calls", b"not json", listed) == []


def test_every_way_the_generator_writes_a_number_normalises_to_one_key() -> None:
    assert {phone_key(w) for w in ("+60123456789", "60123456789", "012-345 6789", "+60 12-345 6789")} == {
        "phone:+60123456789"}


def test_the_check_counts_missing_duplicate_and_false_commands() -> None:
    expected = {"a": (("HOLD_TRANSFER", "FREEZE_ACCOUNT"), 0), "b": (("BLOCK_CALL",), 0)}
    seen = Counter({("a", "HOLD_TRANSFER"): 2, ("a", "FREEZE_ACCOUNT"): 1, ("c", "BLOCK_CALL"): 1})
    assert correctness(expected, seen) == {"expected_commands": 3, "missing": 1, "duplicates": 1, "false": 1}


def test_the_summary_sets_each_sekat_policy_beside_the_peers() -> None:
    from argparse import Namespace

    from load_tests.peers import summarise

    def figures(eps: int) -> dict[str, float]:
        return {"events_per_s": eps, "cpu_us_per_event": 1e6 / eps, "missing": 0, "duplicates": 0, "false": 0}

    runs = {"quix": [figures(50_000)], "sekat": [figures(40_000)], "sekat-shipped": [figures(20_000)]}
    args = Namespace(blocklist=1, partitions=4, rounds=1, faust_events=1, quix_commit_interval=0.25)
    result = summarise(runs, 100, args)
    assert (result["sekat_to_quix"], result["sekat_shipped_to_quix"]) == (0.8, 0.4)
    assert result["sekat_policies"] == {"sekat": "blocklist-only", "sekat-shipped": "shadow"}
    assert result["median"]["sekat-shipped"]["correct"] is True
