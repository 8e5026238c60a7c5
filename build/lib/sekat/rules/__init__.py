"""Decision rules: pure functions from (event, lookups, now) to a Decision.

No I/O here: rules never touch Redis, Kafka or the clock. They receive the
blocklist entries the shell looked up for a batch and the time of decision.
"""
