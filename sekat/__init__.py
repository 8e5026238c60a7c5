"""Sekat: stops scams while they happen.

One import namespace; each part keeps its folder at the top of the repository
(docs/architecture.md draws the layers, ``tests/unit/test_layers.py`` keeps them):

    sekat/      sekat.*          the ground (records, identifiers, settings, errors, redaction, expiry,
                                 redis_url, redis_acl, contract, institutions) and the top (cli, localstack, preflight)
    rules/      sekat.rules      pure decisions and the policy
    decode/     sekat.decode     bytes in, a typed record or a rejection out: contract JSON, ISO 20022, CDR
    blocklist/  sekat.blocklist  the Redis serving index and each worker's local replica
    metrics/    sekat.metrics    the worker's metrics, ``sekat top``, Prometheus rules, the dashboard
    brake/      sekat.brake      the safety brake
    release/    sekat.release    release commands when an entry is revoked or expires
    streams/    sekat.streams    the worker: Faust app, screening consumer, outputs, report intake
    relay/      sekat.relay      the webhook relay: commands POSTed, signed, to institutions without Kafka
    api/        sekat.api        the agency HTTP API and its keys
"""

__version__ = "0.1.0"
