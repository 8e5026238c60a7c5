"""The blocklist: reports filed and merged into entries, the Redis serving index, and each worker's local replica.

    filing            raw fields from an agency (API, CLI, bulk import) -> a valid ``Report``
    bulk              ``sekat blocklist import`` / ``export``
    lifecycle, links  how reports merge into an entry, and travel to linked identifiers (pure)
    connection        the one place a Redis client is made (one server or a cluster)
    store             the Redis serving index and its change stream
    replica           a worker's in-memory copy of the index, following the change stream
    index_scan        reading the whole index into the replica's arrays
    replica_snapshot  the replica's copy kept in Redis for the next worker to start
    readahead         threads that read from Redis ahead of the parsing

Imports nothing from ``streams``.
"""
