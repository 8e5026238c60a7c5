"""Every Redis client is made with one set of options, and a hot-path user stops asking after a timeout."""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeout

from sekat.blocklist.connection import Unanswered, async_client, client_options, sync_client
from sekat.errors import BlocklistUnavailable


def test_clients_wait_the_given_timeout_and_do_not_retry_inside_redis_py() -> None:
    options = client_options(500)
    assert options["socket_timeout"] == 0.5 and options["socket_connect_timeout"] == 0.5
    assert options["retry"].get_retries() == 0  # redis-py's default would make a hung Redis cost 4 timeouts
    assert client_options(500, blocking_ms=1000)["socket_timeout"] == 1.5  # XREAD BLOCK waits on purpose
    pool = async_client("redis://127.0.0.1:1/0", 250).connection_pool
    assert pool.connection_kwargs["socket_timeout"] == 0.25
    assert sync_client("redis://127.0.0.1:1/0", 250).connection_pool.connection_kwargs["socket_timeout"] == 0.25


def test_after_a_timeout_a_user_is_quiet_for_a_while_but_not_after_a_refusal() -> None:
    now = [100.0]
    gate = Unanswered(quiet_s=2.0, clock=lambda: now[0])
    gate.failed(RedisConnectionError("refused"))
    assert not gate.quiet  # a refusing Redis fails at once anyway: keep asking
    try:
        raise BlocklistUnavailable("lookup") from RedisTimeout("Timeout reading from socket")
    except BlocklistUnavailable as exc:
        gate.failed(exc)
    assert gate.quiet
    now[0] += 2.1
    assert not gate.quiet


def test_clients_send_no_client_setinfo_which_the_acl_users_are_not_granted() -> None:
    # redis-py names itself with CLIENT SETINFO on every connection unless told not to; sekat.redis_acl grants
    # no CLIENT subcommand (Redis 7.0 does not know SETINFO, and on 7.2 each refusal would land in ACL LOG).
    for client in (async_client("redis://127.0.0.1:1/0"), sync_client("redis://127.0.0.1:1/0")):
        kwargs = client.connection_pool.connection_kwargs
        unnamed = (kwargs.get("lib_name", "unset"), kwargs.get("lib_version", "unset")) == (None, None)
        assert kwargs.get("driver_info", "unset") is None or unnamed


async def test_a_redis_cluster_none_of_whose_nodes_answers_is_redis_down_to_every_store() -> None:
    """redis-py raises RedisClusterUnreachableError (not a RedisError) when no node of a cluster answers: every
    store turns it into its own 'Redis is down' answer, as for a single server that refuses."""
    from redis.exceptions import RedisClusterException

    from sekat.blocklist.store import BlocklistStore
    from sekat.brake.store import BrakeStore
    from sekat.localstack.processes import free_port
    from sekat.release.acted import ActedStore

    url = f"redis+cluster://127.0.0.1:{free_port()}"
    index, brakes, acted = (BlocklistStore.from_url(url, "x:"), BrakeStore.from_url(url, "x:"),
                            ActedStore.from_url(url, "x:"))
    calls = [index.lookup_many(["phone:+60123456789"]), index.build_id(), brakes.tripped(),
             brakes.add({"rule:r@1": 1}, 0.0, 60), acted.record([("phone:+60123456789", "x")], 0.0)]
    for call in calls:
        try:
            await call
        except RedisClusterException as exc:  # pragma: no cover - the failure this test is for
            raise AssertionError(f"{type(exc).__name__} escaped a store") from exc
        except Exception:  # noqa: BLE001 - the store's own error (BlocklistUnavailable, ...) is the point
            pass
