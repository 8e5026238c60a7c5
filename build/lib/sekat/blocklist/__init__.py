"""The blocklist: normalised identifiers, the Redis serving index, and (later)
the local replica and agency API. Imports nothing from ``streams``."""
