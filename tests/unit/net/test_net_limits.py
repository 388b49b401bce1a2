"""Connection limiter and token buckets, on a fake clock."""

from __future__ import annotations

import pytest

from postar.net.limits import (
    Admission,
    ConnectionLimiter,
    KeyedTokenBuckets,
    TokenBucket,
    client_key,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_per_ip_limit_and_release() -> None:
    limiter = ConnectionLimiter(total=10, per_ip=2)
    assert limiter.acquire("192.0.2.1") is Admission.ACCEPTED
    assert limiter.acquire("192.0.2.1") is Admission.ACCEPTED
    assert limiter.acquire("192.0.2.1") is Admission.OVER_PER_IP
    assert limiter.acquire("192.0.2.2") is Admission.ACCEPTED
    assert limiter.count == 3 and limiter.count_for("192.0.2.1") == 2
    limiter.release("192.0.2.1")
    assert limiter.acquire("192.0.2.1") is Admission.ACCEPTED


def test_total_limit() -> None:
    limiter = ConnectionLimiter(total=2, per_ip=5)
    assert limiter.acquire("192.0.2.1") is Admission.ACCEPTED
    assert limiter.acquire("192.0.2.2") is Admission.ACCEPTED
    assert limiter.acquire("192.0.2.3") is Admission.OVER_TOTAL
    assert limiter.count == 2  # a refusal counts nothing


def test_released_addresses_leave_no_entry() -> None:
    limiter = ConnectionLimiter(total=5, per_ip=5)
    for i in range(5):
        limiter.acquire(f"192.0.2.{i}")
    for i in range(5):
        limiter.release(f"192.0.2.{i}")
    assert limiter.count == 0
    assert limiter._per_key == {}


def test_release_without_acquire_is_a_bug() -> None:
    limiter = ConnectionLimiter(total=5, per_ip=5)
    with pytest.raises(RuntimeError):
        limiter.release("192.0.2.1")


def test_ipv6_counted_per_64() -> None:
    limiter = ConnectionLimiter(total=10, per_ip=2)
    assert limiter.acquire("2001:db8:1:2::1") is Admission.ACCEPTED
    assert limiter.acquire("2001:db8:1:2:ffff::9") is Admission.ACCEPTED
    assert limiter.acquire("2001:db8:1:2::abcd") is Admission.OVER_PER_IP
    assert limiter.acquire("2001:db8:1:3::1") is Admission.ACCEPTED


def test_client_key_forms() -> None:
    assert client_key("192.0.2.1") == "192.0.2.1"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key("2001:db8::1") == "2001:db8::/64"
    assert client_key("2001:db8::1", ipv6_prefix=128) == "2001:db8::1/128"
    assert client_key("not-an-ip") == "not-an-ip"


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ConnectionLimiter(total=0, per_ip=1)


def test_token_bucket_burst_then_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, burst=3.0, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert bucket.wait_time() == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.take() is True
    assert bucket.take() is False
    clock.now += 100
    assert bucket.tokens == 3.0  # never more than the burst
    assert bucket.wait_time(4.0) == float("inf")


def test_token_bucket_clock_stepping_back_mints_nothing() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1.0, burst=1.0, clock=clock)
    assert bucket.take()
    clock.now -= 10
    assert not bucket.take()
    clock.now += 1
    assert bucket.take()


def test_token_bucket_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1)


def test_keyed_buckets_are_independent() -> None:
    clock = FakeClock()
    buckets = KeyedTokenBuckets(rate=1.0, burst=1.0, clock=clock)
    assert buckets.take("a")
    assert not buckets.take("a")
    assert buckets.take("b")
    assert buckets.wait_time("a") == pytest.approx(1.0)
    assert buckets.wait_time("never-seen") == 0.0


def test_keyed_buckets_prune_only_full_ones() -> None:
    clock = FakeClock()
    buckets = KeyedTokenBuckets(rate=1.0, burst=2.0, clock=clock)
    buckets.take("a", 2)
    buckets.take("b", 1)
    clock.now += 1.0  # "b" is full again, "a" holds one token
    assert buckets.prune() == 1
    assert len(buckets) == 1
    assert not buckets.take("a", 2)


def test_keyed_buckets_bounded() -> None:
    clock = FakeClock()
    buckets = KeyedTokenBuckets(rate=1.0, burst=1.0, max_keys=3, clock=clock)
    for key in range(10):
        buckets.take(key)
    assert len(buckets) == 3
