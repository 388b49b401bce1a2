"""Connection counting and rate limiting, shared by every listener.

``ConnectionLimiter`` counts open connections in total and per client address; the listener
asks it before a handler starts and tells it when the connection ends. ``TokenBucket`` and
``KeyedTokenBuckets`` are the helpers for later rate limits (commands per second, failed logins,
messages per sender): plain arithmetic on an injected clock, no timers, no tasks.

IPv6 clients are counted per /64 by default: one subscriber usually holds a whole /64, so
counting single addresses would let one host open ``per_ip`` connections from each of 2**64
addresses.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable


class Admission(enum.Enum):
    ACCEPTED = "accepted"
    OVER_TOTAL = "over_total"
    OVER_PER_IP = "over_per_ip"


@functools.lru_cache(maxsize=4096)  # twice per connection; parsing costs more than the rest
def client_key(ip: str, ipv6_prefix: int = 64) -> str:
    """The key a client address is counted under: IPv4 as-is, IPv6 by its prefix."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip  # not an IP (a UNIX socket path, a test double): count it by name
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        net = ipaddress.IPv6Network((addr, ipv6_prefix), strict=False)
        return str(net)
    return str(addr)


class ConnectionLimiter:
    """Open-connection counters: total across all listeners and per client address.

    Not thread-safe; every call comes from the event loop's thread.
    """

    __slots__ = ("_count", "_ipv6_prefix", "_per_ip", "_per_key", "per_ip", "total")

    def __init__(self, total: int, per_ip: int, *, ipv6_prefix: int = 64) -> None:
        if total < 1 or per_ip < 1:
            raise ValueError("connection limits must be at least 1")
        self.total = total
        self.per_ip = per_ip
        self._ipv6_prefix = ipv6_prefix
        self._count = 0
        # Only addresses with open connections have an entry, so the map is bounded by `total`.
        self._per_key: dict[str, int] = {}

    @property
    def count(self) -> int:
        return self._count

    def count_for(self, ip: str) -> int:
        return self._per_key.get(client_key(ip, self._ipv6_prefix), 0)

    def acquire(self, ip: str) -> Admission:
        """Count one more connection from `ip`, unless a limit is reached (then count nothing)."""
        if self._count >= self.total:
            return Admission.OVER_TOTAL
        key = client_key(ip, self._ipv6_prefix)
        current = self._per_key.get(key, 0)
        if current >= self.per_ip:
            return Admission.OVER_PER_IP
        self._per_key[key] = current + 1
        self._count += 1
        return Admission.ACCEPTED

    def release(self, ip: str) -> None:
        """Forget one connection from `ip`; call exactly once per ACCEPTED acquire."""
        key = client_key(ip, self._ipv6_prefix)
        current = self._per_key.get(key, 0)
        if current <= 0:
            raise RuntimeError(f"release() without acquire() for {ip}")
        if current == 1:
            del self._per_key[key]
        else:
            self._per_key[key] = current - 1
        self._count -= 1


class TokenBucket:
    """A token bucket: holds at most `burst` tokens and gains `rate` tokens per second.

    ``take(n)`` spends n tokens if the bucket holds them and says whether it did;
    ``wait_time(n)`` tells how long until n tokens are there (0.0 if now), so a caller can
    either refuse ("421 too fast") or sleep that long. The bucket starts full.
    """

    __slots__ = ("_clock", "_stamp", "_tokens", "burst", "rate")

    def __init__(
        self, rate: float, burst: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        # A clock that steps back (a test clock, never monotonic()) must not mint tokens later.
        self._stamp = now

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens

    @property
    def full(self) -> bool:
        return self.tokens >= self.burst

    def take(self, n: float = 1.0) -> bool:
        self._refill()
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False

    def wait_time(self, n: float = 1.0) -> float:
        """Seconds until `n` tokens are available; inf if n exceeds the burst (never)."""
        if n > self.burst:
            return float("inf")
        self._refill()
        missing = n - self._tokens
        return 0.0 if missing <= 0 else missing / self.rate


class KeyedTokenBuckets:
    """One TokenBucket per key (client IP, account, sender), with bounded memory.

    A bucket that has refilled to `burst` is the same as a new one, so ``prune()`` drops those
    without losing anything; ``take`` prunes when the map reaches `max_keys`, and if every
    bucket is still draining it evicts the least recently used. That last resort lets a client
    that floods with more than `max_keys` distinct keys reset an old key's bucket: size
    `max_keys` well above the keys seen in one refill period.
    """

    __slots__ = ("_buckets", "_clock", "burst", "max_keys", "rate")

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _bucket(self, key: Hashable) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is not None:
            self._buckets.move_to_end(key)
            return bucket
        if len(self._buckets) >= self.max_keys:
            self.prune()
            while len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)
        bucket = TokenBucket(self.rate, self.burst, clock=self._clock)
        self._buckets[key] = bucket
        return bucket

    def take(self, key: Hashable, n: float = 1.0) -> bool:
        return self._bucket(key).take(n)

    def wait_time(self, key: Hashable, n: float = 1.0) -> float:
        bucket = self._buckets.get(key)
        return 0.0 if bucket is None and n <= self.burst else self._bucket(key).wait_time(n)

    def prune(self) -> int:
        """Drop buckets that are full again; returns how many were dropped."""
        full = [key for key, bucket in self._buckets.items() if bucket.full]
        for key in full:
            del self._buckets[key]
        return len(full)
