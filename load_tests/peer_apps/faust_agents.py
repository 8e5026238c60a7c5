"""The job as Faust agents, the two ways Faust's documentation leads to: ``naive`` awaits one Redis GET and one
``send`` per event; ``batched`` takes up to 1,000 events (``stream.take``), one MGET for them, and sends the
commands. Both read the index Sekat reads (``<prefix>bl:<key>``, JSON with a ``status``); Faust commits the
offsets of what its agents have processed every ``broker_commit_interval``."""

from __future__ import annotations

import sys

import faust
import orjson
import redis.asyncio as aioredis

from load_tests.peer_apps.job import commands, config, keys

conf = config()
app = faust.App(conf["group"], broker=f"kafka://{conf['bootstrap']}", web_enabled=False, store="memory://",
                broker_commit_interval=conf["faust_commit_interval_s"], consumer_auto_offset_reset="earliest",
                topic_disable_leader=True, producer_linger_ms=5)
index = aioredis.Redis.from_url(conf["redis_url"])
prefix = conf["redis_prefix"] + "bl:"
output = app.topic(conf["output"], key_serializer="raw", value_serializer="raw")


def parse(value: bytes) -> dict | None:
    try:
        return orjson.loads(value)
    except ValueError:
        return None


async def act(kind: str, event: dict, key: str, raw: bytes) -> None:
    for command in commands(kind, event, key, orjson.loads(raw)["status"]):
        await output.send(key=command["key"].encode(), value=orjson.dumps(command))


def agent(kind: str, topic_name: str) -> None:
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")

    if conf["mode"] == "naive":
        async def screen(stream):  # type: ignore[no-untyped-def]
            async for value in stream:
                event = parse(value)
                if event is None:
                    continue
                for key in keys(kind, event):
                    raw = await index.get(prefix + key)
                    if raw is not None:
                        await act(kind, event, key, raw)
    else:
        async def screen(stream):  # type: ignore[no-untyped-def]
            async for values in stream.take(1000, within=0.05):
                events = [(event, keys(kind, event)) for event in map(parse, values) if event is not None]
                wanted = [key for _, ks in events for key in ks]
                found = dict(zip(wanted, await index.mget([prefix + key for key in wanted]))) if wanted else {}
                for event, ks in events:
                    for key in ks:
                        if found.get(key) is not None:
                            await act(kind, event, key, found[key])

    screen.__name__ = f"screen_{kind}"
    app.agent(topic, name=f"screen_{kind}")(screen)


for kind, name in conf["topics"].items():
    agent(kind, name)

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    app.main()
