"""Event-time windows: the busiest window containing an event, whatever the arrival order."""

from rules.windows import most_distinct


def test_counts_distinct_parties_not_events() -> None:
    assert most_distinct([(0, "a"), (1, "a"), (2, "b")], 2, 10) == 2


def test_window_edges_are_inclusive_and_exact() -> None:
    points = [(0, "a"), (10, "b"), (20, "c")]
    assert most_distinct(points, 20, 20) == 3  # [0, 20] holds all three
    assert most_distinct(points, 20, 19) == 2  # no 19-wide window holds 0 and 20


def test_an_early_event_arriving_last_sees_the_later_ones() -> None:
    points = [(100, "b"), (105, "c"), (90, "a")]  # a occurred first but is judged last
    assert most_distinct(points, 90, 15) == 3
    assert most_distinct(points, 90, 14) == 2


def test_the_window_must_contain_the_event() -> None:
    points = [(0, "a"), (1, "b"), (2, "c"), (100, "d")]
    assert most_distinct(points, 100, 10) == 1
