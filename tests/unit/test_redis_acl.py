"""The Redis ACL plan as lines an operator pastes: one per user, under the configured prefix, with names and
prefixes that cannot break a rule. That Redis loads these lines and enforces them is
``tests/integration/test_redis_acl.py`` and ``test_security.py``."""

import subprocess
import sys

import pytest

from sekat.errors import ConfigError
from sekat.redis_acl import acl_lines, redis_acl_plan, user_rules


def test_sekat_redis_acls_prints_a_user_line_per_process_for_the_configured_prefix() -> None:
    env = {"SEKAT_REDIS_PREFIX": "fraud:", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "sekat.cli", "redis-acls", "--api-user", "web"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[:5] for line in lines] == [["user", name, "reset", "on", ">PASSWORD"]
                                                   for name in ("sekat", "web", "sekat-admin")]
    assert lines == acl_lines(redis_acl_plan({"api": "web"}), "fraud:")
    api = lines[1]
    # The API's index and keys are read-only patterns; no key pattern of any user leaves the prefix.
    assert "(%R~fraud:bl:* +get +mget)" in api and "(%R~fraud:apikeys +hget)" in api
    assert all(rule.startswith(("~fraud:", "%R~fraud:", "(~fraud:", "(%R~fraud:"))
               for line in lines for rule in line.split() if "~" in rule)


def test_glob_characters_in_the_prefix_are_taken_literally() -> None:
    [worker, *_] = redis_acl_plan()
    assert "(~a\\*b\\?:bl:*" in " ".join(user_rules(worker, "a*b?:"))


@pytest.mark.parametrize("prefix", ["", "two words:", "(x):"])
def test_a_prefix_that_would_split_a_rule_names_the_setting(prefix: str) -> None:
    [worker, *_] = redis_acl_plan()
    with pytest.raises(ConfigError) as err:
        user_rules(worker, prefix)
    assert err.value.setting == "SEKAT_REDIS_PREFIX"


@pytest.mark.parametrize("users", [{"api": "sekat"}, {"api": "two words"}, {"ops": "x"}])
def test_user_names_are_one_word_each_role_its_own(users: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        redis_acl_plan(users)
