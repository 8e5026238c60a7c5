"""Each input topic's decoder, chosen from settings: the contract JSON, or a format banks and telcos already stream.

A decoder takes bytes and gives a record or a ``Rejection`` (``sekat.decode.transfers.decode_transfer``), or a
list of them when one message holds several events (a pacs.008 with N transactions, a CDR message with N
lines):

    SEKAT_TRANSFERS_FORMAT   json (Transfer contract) | pacs008 (ISO 20022, XML or JSON rendering;
                             SEKAT_MEMBER_DIRECTORY)
    SEKAT_CALLS_FORMAT       json (Call contract) | cdr-csv (SEKAT_CDR_COLUMNS, SEKAT_CDR_DELIMITER) | call-attempt
    SEKAT_TOPIC_SMS          json (Sms contract), with SEKAT_SENDER_REGISTRY_FILE
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from sekat.decode.call_attempt import decode_call_attempt
from sekat.decode.calls import decode_call
from sekat.decode.cdr import CdrCsvDecoder
from sekat.decode.pacs008 import decode_pacs008
from sekat.decode.sms import decode_sms
from sekat.decode.transfers import decode_transfer
from sekat.settings import Settings
from sekat.urls import registrable


def transfer_decoder(settings: Settings) -> Callable[[bytes | None], Any]:
    args = {"max_bytes": settings.max_event_bytes, "region": settings.phone_region,
            "hasher": settings.proxy_hasher()}
    if settings.transfers_format == "pacs008":
        return partial(decode_pacs008, members=settings.member_directory_map(), **args)
    return partial(decode_transfer, **args)


def call_decoder(settings: Settings) -> Callable[[bytes | None], Any]:
    args = {"max_bytes": settings.max_event_bytes, "region": settings.phone_region}
    if settings.calls_format == "cdr-csv":
        return CdrCsvDecoder(settings.cdr_column_map(), settings.cdr_separator, **args)
    if settings.calls_format == "call-attempt":
        return partial(decode_call_attempt, **args)
    return partial(decode_call, **args)


def sms_decoder(settings: Settings) -> Callable[[bytes | None], Any]:
    registrable("example.com.my")  # the public suffix list read now, not on the first SMS's batch
    return partial(decode_sms, max_bytes=settings.max_event_bytes, region=settings.phone_region,
                   senders=settings.sender_registry())
