"""The banks the public check offers for an account: the licensed banks of Malaysia, by name, with their BIC.

A member of the public knows their bank's name, not its BIC; the page lists the names and sends the BIC8
the index keys accounts by (``sekat.identifiers.normalise_bank``). A bank not listed here can still be
asked about through ``GET /v1/status`` with its BIC.
"""

from __future__ import annotations

# (BIC8, name as the bank calls itself), sorted by name for the list.
BANKS: tuple[tuple[str, str], ...] = tuple(sorted((
    ("PHBMMYKL", "Affin Bank"),
    ("AGOBMYKL", "Agrobank"),
    ("RJHIMYKL", "Al Rajhi Bank"),
    ("MFBBMYKL", "Alliance Bank"),
    ("ARBKMYKL", "AmBank"),
    ("BIMBMYKL", "Bank Islam"),
    ("BMMBMYKL", "Bank Muamalat"),
    ("BKRMMYKL", "Bank Rakyat"),
    ("BSNAMYK1", "Bank Simpanan Nasional (BSN)"),
    ("CIBBMYKL", "CIMB Bank"),
    ("CITIMYKL", "Citibank"),
    ("HLBBMYKL", "Hong Leong Bank"),
    ("HBMBMYKL", "HSBC Bank"),
    ("KFHOMYKL", "Kuwait Finance House"),
    ("MBBEMYKL", "Maybank"),
    ("AFBQMYKL", "MBSB Bank"),
    ("OCBCMYKL", "OCBC Bank"),
    ("PBBEMYKL", "Public Bank"),
    ("RHBBMYKL", "RHB Bank"),
    ("SCBLMYKX", "Standard Chartered"),
    ("UOVBMYKL", "UOB"),
), key=lambda bank: bank[1].lower()))

BICS = frozenset(bic for bic, _ in BANKS)
