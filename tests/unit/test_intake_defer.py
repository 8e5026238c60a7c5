"""The reports intake lets screening have the worker's thread first while screening is behind."""

from __future__ import annotations

import asyncio

from sekat.streams.intake import defer_to


def test_the_intake_waits_while_screening_is_behind_then_goes_on() -> None:
    answers = iter([True, True, True, False])
    waited = asyncio.run(defer_to(lambda: next(answers), step_s=0.001, max_s=1.0))
    assert waited == 3 * 0.001


def test_the_intake_does_not_wait_for_an_idle_screening_consumer() -> None:
    assert asyncio.run(defer_to(lambda: False, step_s=0.001, max_s=1.0)) == 0.0


def test_the_intake_goes_on_after_the_longest_wait_however_far_behind_screening_is() -> None:
    asks = []
    waited = asyncio.run(defer_to(lambda: asks.append(1) or True, step_s=0.01, max_s=0.05))
    assert abs(waited - 0.05) < 1e-9 and len(asks) == 5
