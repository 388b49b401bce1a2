"""LoginThrottle's hooks for the SMTP worker processes: on_record tells the other processes
of every failure and success recorded here; apply() records theirs without echoing it back
(an echo would bounce between owner and workers and count one failure many times)."""

from __future__ import annotations

from postar.auth.throttle import LoginThrottle
from postar.config import AuthConfig
from tests.unit.auth.auth_fakes import FakeClock

CFG = AuthConfig(
    failures_before_delay=2,
    failure_delay=2.0,
    failures_before_lockout=4,
    lockout_seconds=900.0,
    failure_window=3600.0,
)
IP = "192.0.2.1"
ALICE = "alice@example.com"

Recorded = tuple[str, str | None, str | None]


def _recording(throttle: LoginThrottle) -> list[Recorded]:
    seen: list[Recorded] = []
    throttle.on_record = lambda what, ip, account: seen.append((what, ip, account))
    return seen


def test_on_record_hears_failures_and_successes() -> None:
    t = LoginThrottle(CFG, FakeClock())
    seen = _recording(t)
    t.record_failure(IP, ALICE)
    t.record_failure(IP)  # the name was not known yet (e.g. a malformed SASL exchange)
    t.record_success(ALICE)
    assert seen == [("failure", IP, ALICE), ("failure", IP, None), ("success", None, ALICE)]
    # The hook is told after the record is made: what it forwards is already counted here.
    assert t.check(IP).delay == 2.0


def test_without_a_hook_recording_still_works() -> None:
    t = LoginThrottle(CFG, FakeClock())
    assert t.on_record is None
    for _ in range(4):
        t.record_failure(IP, ALICE)
    assert t.check(None, ALICE).locked_out


def test_apply_failure_counts_like_a_local_one_without_calling_on_record() -> None:
    t = LoginThrottle(CFG, FakeClock())
    seen = _recording(t)
    t.apply("failure", IP, ALICE)
    t.apply("failure", IP, ALICE)
    decision = t.check(IP, ALICE)
    assert decision.delay == 2.0 and not decision.locked_out  # two failures: the delay starts
    t.apply("failure", IP, ALICE)
    t.apply("failure", IP, ALICE)
    assert t.check(None, ALICE).locked_out  # the account, from any address
    assert t.check(IP, None).locked_out  # and the address, for any account
    assert not t.check("198.51.100.7", "bob@example.com").locked_out
    assert seen == []


def test_remote_and_local_failures_add_up() -> None:
    t = LoginThrottle(CFG, FakeClock())
    seen = _recording(t)
    t.apply("failure", IP, ALICE)  # a worker's
    t.apply("failure", "198.51.100.7", ALICE)  # another worker's, from elsewhere
    t.record_failure(IP, ALICE)
    assert not t.check(None, ALICE).locked_out
    t.record_failure("203.0.113.9", ALICE)  # the fourth for alice, whichever process saw it
    assert t.check(None, ALICE).locked_out
    assert [what for what, _, _ in seen] == ["failure", "failure"]


def test_apply_success_clears_the_account_but_not_the_address() -> None:
    t = LoginThrottle(CFG, FakeClock())
    seen = _recording(t)
    for _ in range(3):
        t.apply("failure", IP, ALICE)
    assert t.check(None, ALICE).delay > 0
    t.apply("success", None, ALICE)
    assert t.check(None, ALICE).delay == 0.0
    assert t.check(IP, None).delay > 0  # kept on purpose (the module docstring)
    assert seen == []


def test_apply_ignores_unknown_kinds_and_a_success_without_account() -> None:
    t = LoginThrottle(CFG, FakeClock())
    t.apply("failure", IP, ALICE)
    t.apply("success", None, None)
    t.apply("something-else", IP, ALICE)
    assert len(t) == 2  # the IP's and alice's records from the one failure, nothing more
    assert t.check(IP, ALICE).delay == 0.0


def test_a_later_process_takes_over_the_records_by_export_and_merge() -> None:
    # A worker started after a crash must not forget failures counted elsewhere.
    clock = FakeClock()
    old, new = LoginThrottle(CFG, clock), LoginThrottle(CFG, clock)
    for _ in range(CFG.failures_before_lockout):
        old.record_failure(IP, ALICE)
    old.record_failure("192.0.2.9")
    seen = _recording(new)
    new.merge(old.export())
    assert new.check(IP, ALICE).locked_out
    assert new.check("192.0.2.9").delay == 0.0  # one failure: below the delay threshold
    new.record_failure("192.0.2.9")
    assert new.check("192.0.2.9").delay > 0  # the merged failure counts with the new one
    assert seen == [("failure", "192.0.2.9", None)]  # merging told nobody
