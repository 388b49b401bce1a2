"""Failed-login throttling, per client IP and per account name.

Theory of operation:
- Each key ("ip:<addr>" or "account:<name>") keeps the times of its recent failures, at most
  failures_before_lockout of them; failures older than failure_window are forgotten.
- Before checking a password the caller asks check(); it answers how long to wait before
  answering (failure_delay per failure past failures_before_delay, capped at MAX_DELAY) and
  whether the IP or the account is locked out. The delay applies whatever the outcome, so a
  client cannot cut the connection early and learn that a silence means "wrong password".
- Reaching failures_before_lockout locks the key for lockout_seconds.
- A success clears the account's record. The IP's record stays: one valid account of its own
  must not let an attacker reset the counter it runs against other accounts.
- Account names are counted whether or not the account exists, so probing unknown names is
  throttled like guessing passwords.
- Memory is bounded: at most max_keys keys, the least recently touched evicted first.
- The clock is injected (monotonic seconds); nothing here sleeps.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from postar.config import AuthConfig

# AuthConfig.failure_delay: "capped at 15 s".
MAX_DELAY = 15.0
DEFAULT_MAX_KEYS = 100_000


@dataclass(frozen=True)
class ThrottleDecision:
    delay: float  # seconds to wait before answering this attempt
    locked_out: bool  # refuse without checking the password
    retry_after: float = 0.0  # seconds until the lockout ends (0 when not locked out)


@dataclass
class _Record:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


class LoginThrottle:
    def __init__(
        self,
        config: AuthConfig,
        clock: Callable[[], float],
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._config = config
        self._clock = clock
        self._max_keys = max_keys
        self._records: OrderedDict[str, _Record] = OrderedDict()
        # Told of every failure and success recorded here, so the server's other processes
        # (SMTP workers) can record them too: one attacker, one count, whichever process
        # it reaches. Those processes' records come in through apply().
        self.on_record: Callable[[str, str | None, str | None], None] | None = None

    def __len__(self) -> int:
        return len(self._records)

    @staticmethod
    def _keys(ip: str | None, account: str | None) -> list[str]:
        keys = []
        if ip:
            keys.append("ip:" + ip)
        if account:
            keys.append("account:" + account.lower())
        return keys

    def _get(self, key: str, now: float, create: bool) -> _Record | None:
        record = self._records.get(key)
        if record is None:
            if not create:
                return None
            record = _Record()
            self._records[key] = record
            while len(self._records) > self._max_keys:
                self._records.popitem(last=False)
        else:
            self._records.move_to_end(key)
        horizon = now - self._config.failure_window
        while record.failures and record.failures[0] <= horizon:
            record.failures.popleft()
        return record

    def check(self, ip: str | None, account: str | None = None) -> ThrottleDecision:
        """Ask before checking credentials; account may be None while the name is unknown."""
        now = self._clock()
        cfg = self._config
        delay = 0.0
        retry_after = 0.0
        for key in self._keys(ip, account):
            record = self._get(key, now, create=False)
            if record is None:
                continue
            if record.locked_until > now:
                retry_after = max(retry_after, record.locked_until - now)
            excess = len(record.failures) - cfg.failures_before_delay + 1
            if len(record.failures) >= cfg.failures_before_delay and excess > 0:
                delay = max(delay, min(cfg.failure_delay * excess, MAX_DELAY))
        return ThrottleDecision(delay=delay, locked_out=retry_after > 0, retry_after=retry_after)

    def record_failure(self, ip: str | None, account: str | None = None) -> None:
        self._record_failure(ip, account)
        if self.on_record is not None:
            self.on_record("failure", ip, account)

    def record_success(self, account: str) -> None:
        self._record_success(account)
        if self.on_record is not None:
            self.on_record("success", None, account)

    def apply(self, kind: str, ip: str | None, account: str | None) -> None:
        """Record what another process of this server recorded (not passed on again)."""
        if kind == "failure":
            self._record_failure(ip, account)
        elif kind == "success" and account:
            self._record_success(account)

    def export(self) -> list[tuple[str, list[float], float]]:
        """Every record, for a process of this server that starts later (an SMTP worker):
        the clock is the system's monotonic one, so the times mean the same there."""
        return [(key, list(r.failures), r.locked_until) for key, r in self._records.items()]

    def merge(self, records: list[tuple[str, list[float], float]]) -> None:
        """Take over exported records (added to what is recorded here; not passed on)."""
        cfg = self._config
        for key, failures, locked_until in records:
            record = self._get(key, self._clock(), create=True)
            assert record is not None
            merged = sorted([*record.failures, *failures])[-max(cfg.failures_before_lockout, 1) :]
            record.failures = deque(merged)
            record.locked_until = max(record.locked_until, locked_until)

    def _record_failure(self, ip: str | None, account: str | None) -> None:
        now = self._clock()
        cfg = self._config
        for key in self._keys(ip, account):
            record = self._get(key, now, create=True)
            assert record is not None
            record.failures.append(now)
            # Only the newest failures matter for the counts; keep the deque bounded.
            while len(record.failures) > max(cfg.failures_before_lockout, 1):
                record.failures.popleft()
            if len(record.failures) >= cfg.failures_before_lockout > 0:
                record.locked_until = now + cfg.lockout_seconds
                record.failures.clear()

    def _record_success(self, account: str) -> None:
        # Only the account's record: the IP's is kept on purpose (see the module docstring).
        self._records.pop("account:" + account.lower(), None)
