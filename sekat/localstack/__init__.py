"""The local stack: a real Kafka (KRaft, jars from Maven Central) and a real Redis, started as child
processes bound to 127.0.0.1.

Used by ``sekat up``/``sekat down`` (``make run``) and by the integration test fixtures, so the stack
a developer runs is the stack the tests run on. Each server writes a pid file into its own directory
and is stopped by that PID.

    processes      ports, pid files, stopping a child by its PID; ``StackError``
    kafka_servers  a single-node KRaft broker and a KRaft cluster of several
    redis_servers  a Redis server and a Redis Cluster (all masters)
    secured        a SASL/TLS Kafka broker and an ACL-user Redis, with throwaway certificates

Nothing here installs system packages: ``deploy/bootstrap.sh`` does that (virtualenv,
``apt-get install redis-server prometheus``, the Kafka jars).
"""
