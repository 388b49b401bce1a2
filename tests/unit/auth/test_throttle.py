from __future__ import annotations

from postar.auth.throttle import MAX_DELAY, LoginThrottle
from postar.config import AuthConfig
from tests.unit.auth.auth_fakes import FakeClock

CFG = AuthConfig(
    failures_before_delay=3,
    failure_delay=2.0,
    failures_before_lockout=6,
    lockout_seconds=900.0,
    failure_window=3600.0,
)


def test_delay_grows_after_threshold_then_lockout() -> None:
    clock = FakeClock()
    t = LoginThrottle(CFG, clock)
    delays = []
    for _ in range(5):
        d = t.check("192.0.2.1", "alice@example.com")
        assert not d.locked_out
        delays.append(d.delay)
        t.record_failure("192.0.2.1", "alice@example.com")
    # 0, 1, 2 failures: no delay; 3 failures: 2 s; 4 failures: 4 s.
    assert delays == [0.0, 0.0, 0.0, 2.0, 4.0]
    t.record_failure("192.0.2.1", "alice@example.com")  # the sixth
    d = t.check("192.0.2.1", "alice@example.com")
    assert d.locked_out and d.retry_after == 900.0
    clock.advance(899)
    assert t.check("192.0.2.1", None).locked_out
    assert t.check("198.51.100.7", "alice@example.com").locked_out  # the account is locked too
    clock.advance(2)
    d = t.check("192.0.2.1", "alice@example.com")
    assert not d.locked_out and d.delay == 0.0


def test_delay_is_capped() -> None:
    cfg = AuthConfig(failures_before_delay=1, failure_delay=10.0, failures_before_lockout=100)
    t = LoginThrottle(cfg, FakeClock())
    for _ in range(10):
        t.record_failure("192.0.2.1")
    assert t.check("192.0.2.1").delay == MAX_DELAY


def test_old_failures_are_forgotten() -> None:
    clock = FakeClock()
    t = LoginThrottle(CFG, clock)
    for _ in range(4):
        t.record_failure("192.0.2.1", "bob@example.com")
    assert t.check("192.0.2.1", "bob@example.com").delay == 4.0
    clock.advance(3600.5)
    assert t.check("192.0.2.1", "bob@example.com").delay == 0.0


def test_success_clears_the_account_but_not_the_ip() -> None:
    t = LoginThrottle(CFG, FakeClock())
    for _ in range(4):
        t.record_failure("192.0.2.1", "bob@example.com")
    t.record_success("BOB@example.com")
    assert t.check(None, "bob@example.com").delay == 0.0
    assert t.check("192.0.2.1", None).delay == 4.0


def test_unknown_keys_and_other_ips_are_unaffected() -> None:
    t = LoginThrottle(CFG, FakeClock())
    for _ in range(5):
        t.record_failure("192.0.2.1", "bob@example.com")
    d = t.check("198.51.100.1", "carol@example.com")
    assert d.delay == 0.0 and not d.locked_out


def test_memory_is_bounded_oldest_evicted() -> None:
    t = LoginThrottle(CFG, FakeClock(), max_keys=10)
    for _ in range(4):
        t.record_failure("10.0.0.1")
    for n in range(2, 40):
        t.record_failure(f"10.0.0.{n}")
    assert len(t) == 10
    assert t.check("10.0.0.1").delay == 0.0  # evicted
    t.record_failure("10.0.0.39")
    assert len(t) == 10
