"""Scale-out configuration: Redis Cluster URLs, replicated topics, the local cluster's broker settings.

A Redis Cluster is chosen by the URL alone (``redis+cluster://``), validated at start-up with the
setting named; topics on a 3-broker cluster are replicated three ways with ``min.insync.replicas=2``;
``sekat up --brokers 3 --redis-cluster`` refuses settings that do not describe such a cluster.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from redis.crc import key_slot

from sekat.blocklist.connection import SLOTS, async_client, by_slot, slot_group, spread_tags, sync_client
from sekat.errors import ConfigError
from sekat.localstack.kafka_servers import KafkaCluster
from sekat.localstack.processes import StackError
from sekat.localstack.redis_servers import RedisClusterServers
from sekat.redis_url import cluster_seeds, is_cluster
from sekat.release.acted import ActedKeys
from sekat.settings import Settings
from sekat.streams.topics import topic_specs


def test_a_cluster_url_names_its_seed_nodes() -> None:
    url = "redis+cluster://127.0.0.1:17001,127.0.0.1:17002, 10.0.0.3:7000"
    assert is_cluster(url) and not is_cluster("redis://127.0.0.1:6379/0")
    assert cluster_seeds(url) == [("127.0.0.1", 17001), ("127.0.0.1", 17002), ("10.0.0.3", 7000)]
    assert cluster_seeds("rediss+cluster://user:s3cret@cache.example:6380") == [("cache.example", 6380)]


def test_the_url_chooses_the_client() -> None:
    assert isinstance(async_client("redis+cluster://127.0.0.1:17001"), aioredis.RedisCluster)
    assert isinstance(async_client("redis://127.0.0.1:6379/0"), aioredis.Redis)
    assert not isinstance(sync_client("redis://127.0.0.1:6379/0"), redis.RedisCluster)  # (a sync cluster client
    # connects when made: the integration tests make one)


@pytest.mark.parametrize("url,why", [
    ("redis+cluster://", "host:port"),
    ("redis+cluster://127.0.0.1", "host:port"),
    ("redis+cluster://127.0.0.1:99999", "host:port"),
    ("redis+cluster://127.0.0.1:17001/2", "database 0"),
    ("redis+cluster://127.0.0.1:17001?ssl=yes", "not supported"),
    ("cluster://127.0.0.1:17001", "redis+cluster://"),
])
def test_a_bad_redis_url_stops_start_up_naming_the_setting(url: str, why: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_environ({"SEKAT_REDIS_URL": url})
    assert err.value.setting == "SEKAT_REDIS_URL" and why in str(err.value)


def test_keys_are_grouped_by_hash_slot_in_order() -> None:
    keys = ["a{x}1", "b", "a{x}2", "c", "{x}"]
    groups = by_slot(keys)
    assert [0, 2, 4] in groups.values()  # one hash tag, one slot
    assert sorted(i for g in groups.values() for i in g) == list(range(len(keys)))


def test_hash_tag_groups_spread_over_the_slot_space_and_keys_follow_their_own_slot() -> None:
    for n in (1, 3, 16):
        tags = spread_tags(n)
        assert len(set(tags)) == n
        assert [key_slot(t.encode()) * n // SLOTS for t in tags] == list(range(n))  # tag g in the g-th n-th
    for key in ("account:CIBBMYKL:8001234567", "phone:+60123456789", "phone:+6013"):
        g = slot_group(key, 16)
        low, high = g * SLOTS // 16, (g + 1) * SLOTS // 16
        assert low <= key_slot(key.encode()) < high


def test_who_acted_keeps_its_names_on_one_server_and_shares_a_slot_per_entry_on_a_cluster() -> None:
    one, many = ActedKeys("sekat:", cluster=False), ActedKeys("sekat:", cluster=True)
    key = "account:CIBBMYKL:8001234567"
    assert (one.acted(key), one.due(key), one.dues()) == (f"sekat:acted:{key}", "sekat:acted:due", ["sekat:acted:due"])
    assert key_slot(many.acted(key).encode()) == key_slot(many.due(key).encode())  # one MULTI / script per entry
    assert len({key_slot(d.encode()) for d in many.dues()}) == 16
    keys = [f"phone:+6013{i:07d}" for i in range(200)]
    assert set(many.by_due(keys)) == set(many.dues())  # 200 entries use every group


def test_topics_on_a_cluster_are_replicated_three_ways_with_two_in_sync() -> None:
    settings = Settings.from_environ({"SEKAT_TOPIC_REPLICATION": "3"})
    for spec in topic_specs(settings):
        assert spec.replication_factor == 3
        assert spec.topic_configs["min.insync.replicas"] == "2", spec.name
    single = topic_specs(Settings.from_environ({}))
    assert {(s.replication_factor, s.topic_configs["min.insync.replicas"]) for s in single} == {(1, "1")}
    with pytest.raises(ConfigError) as err:
        Settings.from_environ({"SEKAT_TOPIC_REPLICATION": "0"})
    assert err.value.setting == "SEKAT_TOPIC_REPLICATION"


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_local_kafka_cluster_members_share_voters_and_replicate_internal_topics(tmp_path: Path) -> None:
    cluster = KafkaCluster(tmp_path, [19092, 29092, 39092])
    props = [_props(b.properties()) for b in cluster.brokers]
    assert [p["node.id"] for p in props] == ["1", "2", "3"]
    assert {p["controller.quorum.voters"] for p in props} == {"1@127.0.0.1:19093,2@127.0.0.1:29093,3@127.0.0.1:39093"}
    assert [p["listeners"] for p in props][1] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    for p in props:
        assert p["offsets.topic.replication.factor"] == "3" and p["default.replication.factor"] == "3"
        assert p["min.insync.replicas"] == "2" and p["transaction.state.log.min.isr"] == "2"
    assert len({p["log.dirs"] for p in props}) == 3
    assert cluster.bootstrap == "127.0.0.1:19092,127.0.0.1:29092,127.0.0.1:39092"


def test_a_redis_cluster_needs_three_masters(tmp_path: Path) -> None:
    with pytest.raises(StackError):
        RedisClusterServers(tmp_path, [17001, 17002])
    assert RedisClusterServers(tmp_path, [17001, 17002, 17003]).url == \
        "redis+cluster://127.0.0.1:17001,127.0.0.1:17002,127.0.0.1:17003"


@pytest.mark.parametrize("env,args,setting", [
    ({}, ["--brokers", "3"], "SEKAT_KAFKA_BOOTSTRAP"),
    ({"SEKAT_KAFKA_BOOTSTRAP": "127.0.0.1:19092,127.0.0.1:29092,127.0.0.1:39092"}, ["--brokers", "3"],
     "SEKAT_TOPIC_REPLICATION"),
    ({}, ["--redis-cluster"], "SEKAT_REDIS_URL"),
])
def test_up_refuses_cluster_flags_the_settings_do_not_describe(env: dict[str, str], args: list[str],
                                                                setting: str, tmp_path: Path) -> None:
    from tests.support import child_env

    env = {"SEKAT_STACK_DIR": str(tmp_path), **env}
    done = subprocess.run([sys.executable, "-m", "sekat.cli", "up", *args], env=child_env(env),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and setting in done.stderr, done.stderr
    assert not any(tmp_path.iterdir()), "nothing may be started"


def test_up_and_down_find_the_cluster_the_settings_name(tmp_path: Path) -> None:
    from sekat.cli.stack import local_servers
    from sekat.localstack.kafka_servers import KafkaBroker
    from sekat.localstack.redis_servers import RedisServer

    kafka, redis_ = local_servers(Settings.from_environ({
        "SEKAT_STACK_DIR": str(tmp_path), "SEKAT_KAFKA_BOOTSTRAP": "127.0.0.1:19092,127.0.0.1:29092,127.0.0.1:39092",
        "SEKAT_REDIS_URL": "redis+cluster://127.0.0.1:17001,127.0.0.1:17002,127.0.0.1:17003"}))
    assert isinstance(kafka, KafkaCluster) and kafka.ports == [19092, 29092, 39092]
    assert isinstance(redis_, RedisClusterServers) and redis_.ports == [17001, 17002, 17003]
    single = local_servers(Settings.from_environ({"SEKAT_STACK_DIR": str(tmp_path)}))
    assert isinstance(single[0], KafkaBroker) and isinstance(single[1], RedisServer)
    for url in ("redis+cluster://cache.example:6379", "redis+cluster://127.0.0.1:17001"):
        assert local_servers(Settings.from_environ({"SEKAT_REDIS_URL": url}))[1] is None  # used by a seed, not started


def test_up_says_which_port_of_the_cluster_is_taken(tmp_path: Path) -> None:
    import socket

    from tests.support import child_env

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"SEKAT_STACK_DIR": str(tmp_path), "SEKAT_KAFKA_BOOTSTRAP": "kafka.example:9092",  # (not started)
               "SEKAT_REDIS_URL": f"redis+cluster://127.0.0.1:{port},127.0.0.1:{port + 2},127.0.0.1:{port + 4}"}
        done = subprocess.run([sys.executable, "-m", "sekat.cli", "up", "--redis-cluster", "--no-topics"],
                              env=child_env(env),
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and f"port 127.0.0.1:{port} is taken" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
