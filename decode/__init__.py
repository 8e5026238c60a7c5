"""Decoding at the edge: bytes in, a typed record or a ``Rejection`` out.

    fields        the field readers every decoder shares, ``Bad`` and the reason codes
    transfers     the Transfer contract (JSON)            calls         the Call contract (JSON)
    reports       the Report contract (JSON)              call_attempt  call-attempt events (JSON)
    iso20022      reading ISO 20022 messages (XML, JSON)  pacs008       a pacs.008 mapped onto Transfers
    cdr           call detail records (CSV)               formats       each topic's decoder, from settings
    processes     a stream's decoder in child processes beside the worker
"""
