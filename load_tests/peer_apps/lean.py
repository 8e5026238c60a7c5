"""The lean loop: aiokafka ``getmany``, orjson, a dict lookup, produce, and the batch's offsets committed once
its commands are acknowledged: the floor of what any Python consumer on aiokafka costs."""

from __future__ import annotations

import asyncio

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from load_tests.peer_apps.job import config, decide, load_blocklist


async def main() -> None:
    conf = config()
    listed = load_blocklist(conf["blocklist"])
    kinds = {topic: kind for kind, topic in conf["topics"].items()}
    consumer = AIOKafkaConsumer(*kinds, bootstrap_servers=conf["bootstrap"], group_id=conf["group"],
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    producer = AIOKafkaProducer(bootstrap_servers=conf["bootstrap"], linger_ms=5, max_batch_size=256 * 1024)
    await consumer.start()
    await producer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            sent = []
            for tp, records in batch.items():
                kind = kinds[tp.topic]
                for record in records:
                    for command in decide(kind, record.value, listed):
                        sent.append(await producer.send(conf["output"], orjson.dumps(command),
                                                        key=command["key"].encode()))
            if sent:
                await asyncio.gather(*sent)
            if batch:
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


if __name__ == "__main__":
    asyncio.run(main())
