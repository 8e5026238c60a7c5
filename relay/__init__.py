"""The webhook relay (``sekat relay``): commands from Kafka to institutions that do not read Kafka.

The institutions (id, HTTPS endpoint, signing secrets) are ``sekat.institutions``, read from
``SEKAT_INSTITUTIONS_FILE`` and checked with the other settings at start-up.

    signing       Standard Webhooks 1.0 signatures (webhook-id, webhook-timestamp, webhook-signature)
    breaker       per-institution circuit breaker and the retry backoff (pure, clock injected)
    undelivered   the record written to SEKAT_TOPIC_UNDELIVERED when a command is given up
    metrics       per-institution delivery metrics
    consumer      the relay itself: command topics in, signed POSTs out, offsets committed after delivery
"""
