"""Redis URLs: which kind of Redis ``SEKAT_REDIS_URL`` names, checked before anything connects.

    redis://host:port/db, rediss://..., unix://...       one server
    redis+cluster://[user:password@]host:port[,host:port...]
    rediss+cluster://...                                  Redis Cluster (the addresses are seeds)

Settings validate the URL at start-up with ``validate_url``; ``sekat.blocklist.connection`` makes the clients.
"""

from __future__ import annotations

from urllib.parse import urlparse

CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # scheme -> TLS
SINGLE_SCHEMES = ("redis", "rediss", "unix")


def is_cluster(url: str) -> bool:
    return urlparse(url).scheme in CLUSTER_SCHEMES


def cluster_seeds(url: str) -> list[tuple[str, int]]:
    """The seed nodes of a ``redis+cluster://`` URL; ValueError says what is wrong with it."""
    parsed = urlparse(url)
    if parsed.scheme not in CLUSTER_SCHEMES:
        raise ValueError(f"not a Redis Cluster URL (redis+cluster:// or rediss+cluster://): {parsed.scheme}://")
    hosts = parsed.netloc.rpartition("@")[2]
    seeds: list[tuple[str, int]] = []
    for part in hosts.split(","):
        host, _, port = part.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected host:port[,host:port] after {parsed.scheme}://, got {part.strip()!r}")
        seeds.append((host.strip("[]"), int(port)))
    if parsed.path not in ("", "/", "/0"):
        raise ValueError("a Redis Cluster has only database 0; drop the /db part")
    if parsed.query:
        raise ValueError("options after '?' are not supported for redis+cluster://")
    return seeds


def validate_url(url: str) -> None:
    """ValueError with the reason when ``url`` is not one Sekat can connect to."""
    scheme = urlparse(url).scheme
    if scheme in CLUSTER_SCHEMES:
        cluster_seeds(url)
    elif scheme not in SINGLE_SCHEMES:
        raise ValueError("must start with redis://, rediss://, unix://, redis+cluster:// or rediss+cluster://")
