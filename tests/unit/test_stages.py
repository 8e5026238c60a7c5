"""``load_tests.stages`` divides a profile's working samples between the hot path's stages: each sample goes to the
innermost frame that names a stage (normalising inside decoding is normalising), frames that name none (the
event loop, aiokafka's connection) are looked through, and waits are left out."""

from __future__ import annotations

from pathlib import Path

from load_tests.stages import profile_stages, stage_of

LOOP = "_run_module_as_main (<frozen runpy>:198);BaseEventLoop._run_once (asyncio/base_events.py:1922)"


def test_each_sample_goes_to_its_innermost_stage_and_waits_are_left_out(tmp_path: Path) -> None:
    stacks = tmp_path / "profile.txt"
    stacks.write_text("\n".join([
        f"{LOOP};Screen.start (streams/screening.py:143);Screen._sort (streams/screening.py:163);"
        "_decode_fast (decode/transfers.py:74) 5",
        f"{LOOP};Screen._sort (streams/screening.py:163);_decode_fast (decode/transfers.py:90);"
        "normalise_account (sekat/identifiers.py:95) 3",
        f"{LOOP};AIOKafkaConsumer.getmany (aiokafka/consumer/consumer.py:1100);"
        "PartitionRecords._consumer_record (aiokafka/consumer/fetcher.py:311) 4",
        f"{LOOP};Pipeline._commit_latest (streams/consumer.py:270);AIOKafkaConn.send (aiokafka/conn.py:400);"
        "_SelectorSocketTransport.write (asyncio/selector_events.py:1057) 2",
        f"{LOOP};Handle._run (asyncio/events.py:80) 1",
        f"{LOOP};EpollSelector.select (selectors.py:468) 50",
    ]) + "\n")
    per, waiting = profile_stages(stacks)
    assert dict(per) == {"decode": 5, "normalise": 3, "fetch": 4, "commit": 2, "event loop, sockets, other": 1}
    assert waiting == 50


def test_a_stage_is_named_by_its_file_or_its_function() -> None:
    assert stage_of(["streams/heap.py:HeapKeeper.tick"]) == "gc (heap keeper)"
    assert stage_of(["streams/screening.py:PendingBatch.observe", "prometheus_client/metrics.py:Counter.inc"]) \
        == "metrics"
    assert stage_of(["streams/screening.py:Screen._decide_all", "rules/engine.py:decide_transfer"]) == "decide"
    assert stage_of(["streams/output.py:OutputBatch.command"]) == "encode"
    assert stage_of(["streams/screening.py:Screen.start", "sekat/records.py:Transfer.keys"]) == "look up"
    assert stage_of(["streams/output.py:OutputBatch.produce", "aiokafka/producer/producer.py:send_batch"]) \
        == "produce"
