"""Outcomes are ordered: allow < label < hold < freeze/block.

Combining rule results takes the highest; the engine (``rules.engine``) alone decides precedence.
"""

from __future__ import annotations

import enum


class Outcome(enum.IntEnum):
    ALLOW = 0
    LABEL = 1
    HOLD = 2
    BLOCK = 3  # FREEZE_ACCOUNT for banks, BLOCK_CALL for telcos

