"""The end-to-end benchmark's own pieces: which policy it runs."""

from pathlib import Path

from load_tests.bench import bench_policy, policy_rules
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

