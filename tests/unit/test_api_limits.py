"""Who a public status check counts against."""

from __future__ import annotations

import pytest

from sekat.api.limits import client_bucket


def test_two_ipv6_addresses_of_one_64_share_a_bucket_and_another_64_does_not() -> None:
    assert client_bucket("2001:db8:1:2::1") == client_bucket("2001:db8:1:2:ffff:ffff:ffff:ffff")
    assert client_bucket("2001:db8:1:2::1") != client_bucket("2001:db8:1:3::1")


@pytest.mark.parametrize("host, bucket", [
    ("203.0.113.7", "203.0.113.7"),
    ("::ffff:203.0.113.7", "203.0.113.7"),  # an IPv4 client on a dual-stack socket: its IPv4 budget
    ("2001:DB8:1:2:0:0:0:1", "2001:db8:1:2::/64"),
    ("fe80::1%eth0", "fe80::/64"),
    ("unknown", "unknown"),
])
def test_client_bucket(host: str, bucket: str) -> None:
    assert client_bucket(host) == bucket
