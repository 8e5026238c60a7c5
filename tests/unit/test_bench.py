"""The end-to-end benchmark's own pieces: which policy it runs, and how it sums up a py-spy profile."""

from pathlib import Path

from load_tests.bench import bench_policy, policy_rules, top_functions
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
