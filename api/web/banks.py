"""The banks the public check offers for an account: the banks of Malaysia's Interbank GIRO, by name, with
their BIC.

A member of the public knows their bank's name, not its BIC; the page lists the names and sends the BIC8
the index keys accounts by (``sekat.identifiers.normalise_bank``). An Islamic bank has a BIC of its own, and
its accounts are reported under it, so it is listed on its own. A bank not listed here can still be asked
about through ``GET /v1/status`` with its BIC. The list is PayNet's IBG participants; when a bank joins,
merges or changes its BIC there, change it here.
"""

from __future__ import annotations

# (BIC8, name as the bank calls itself), sorted by name for the list.
BANKS: tuple[tuple[str, str], ...] = tuple(sorted((
    ("PHBMMYKL", "Affin Bank"),
    ("AIBBMYKL", "Affin Islamic Bank"),
    ("AGOBMYK1", "Agrobank"),
    ("RJHIMYKL", "Al Rajhi Bank"),
    ("MFBBMYKL", "Alliance Bank"),
    ("ALSRMYK1", "Alliance Islamic Bank"),
    ("ARBKMYKL", "AmBank"),
    ("AISLMYKL", "AmBank Islamic"),
    ("BKKBMYKL", "Bangkok Bank"),
    ("BIMBMYKL", "Bank Islam"),
    ("BMMBMYKL", "Bank Muamalat"),
    ("BOFAMY2X", "Bank of America"),
    ("BKCHMYKL", "Bank of China"),
    ("BKRMMYKL", "Bank Rakyat"),
    ("BSNAMYK1", "Bank Simpanan Nasional (BSN)"),
    ("BNPAMYKL", "BNP Paribas"),
    ("PCBCMYKL", "China Construction Bank"),
    ("CIBBMYKL", "CIMB Bank"),
    ("CTBBMYKL", "CIMB Islamic Bank"),
    ("CITIMYKL", "Citibank"),
    ("DEUTMYKL", "Deutsche Bank"),
    ("HLBBMYKL", "Hong Leong Bank"),
    ("HLIBMYKL", "Hong Leong Islamic Bank"),
    ("HBMBMYKL", "HSBC Bank"),
    ("HMABMYKL", "HSBC Amanah"),
    ("ICBKMYKL", "ICBC"),
    ("CHASMYKX", "J.P. Morgan Chase Bank"),
    ("KFHOMYKL", "Kuwait Finance House"),
    ("MBBEMYKL", "Maybank"),
    ("MBISMYKL", "Maybank Islamic"),
    ("AFBQMYKL", "MBSB Bank"),
    ("MHCBMYKA", "Mizuho Bank"),
    ("BOTKMYKX", "MUFG Bank"),
    ("OABBMYKL", "OCBC Al-Amin Bank"),
    ("OCBCMYKL", "OCBC Bank"),
    ("PBBEMYKL", "Public Bank"),
    ("PIBEMYKL", "Public Islamic Bank"),
    ("RHBBMYKL", "RHB Bank"),
    ("RHBAMYKL", "RHB Islamic Bank"),
    ("SCBLMYKX", "Standard Chartered"),
    ("SCSRMYK1", "Standard Chartered Saadiq"),
    ("SMBCMYKL", "Sumitomo Mitsui Banking Corporation"),
    ("UOVBMYKL", "UOB"),
), key=lambda bank: bank[1].lower()))

BICS = frozenset(bic for bic, _ in BANKS)
