"""The job as a Quix Streams application: a StreamingDataFrame per input topic, ``apply`` (expanded into the
commands) and ``to_topic``; librdkafka consumes and produces in its own threads. At-least-once (Quix's
default): a checkpoint flushes the producer and then commits, every ``commit_interval`` seconds."""

from __future__ import annotations

from quixstreams import Application

from load_tests.peer_apps.job import config, decide, load_blocklist


def main() -> None:
    conf = config()
    listed = load_blocklist(conf["blocklist"])
    app = Application(broker_address=conf["bootstrap"], consumer_group=conf["group"], auto_offset_reset="earliest",
                      commit_interval=conf["quix_commit_interval_s"], loglevel="WARNING", auto_create_topics=False,
                      use_changelog_topics=False)
    output = app.topic(conf["output"], key_serializer="string", value_serializer="json")
    for kind, name in conf["topics"].items():
        sdf = app.dataframe(topic=app.topic(name, key_deserializer="bytes", value_deserializer="bytes"))
        sdf = sdf.apply(lambda value, kind=kind: decide(kind, value, listed), expand=True)
        sdf.to_topic(output, key=lambda command: command["key"])
    app.run()


if __name__ == "__main__":
    main()
