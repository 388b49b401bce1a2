"""MTA-STS (RFC 8461): discover, fetch, cache and apply a recipient domain's TLS policy.

Theory of operation:
- Discovery (RFC 8461 3.1): the TXT record at _mta-sts.<domain> ("v=STSv1; id=...;") says a
  policy exists and names its version. Exactly one record starting with "v=STSv1" counts;
  none or several mean "no (new) policy".
- Fetch (3.3): HTTPS GET https://mta-sts.<domain>/.well-known/mta-sts.txt, the server
  certificate verified for "mta-sts.<domain>", no redirects followed, only 200 with a
  text/plain body, bounded in size and time. The host's address comes from our Resolver, so
  tests (and split-horizon setups) see the same DNS as MX lookup; the port is 443 except in
  tests (`[relay] mta_sts_port`).
- Cache (3.3, 5.1): a policy is kept for its max_age. While the TXT id equals the cached
  policy's id, no fetch. If the TXT lookup fails, the record is gone or the fetch fails, an
  unexpired cached policy keeps applying: that is what stops an attacker who can block DNS
  or HTTPS from downgrading a domain that once published "enforce" (RFC 8461 10.2). A failed
  fetch with nothing cached is remembered briefly so a broken policy host is not asked again
  for every message. The cache lives in memory: after a restart the first message refetches.
- Application (4.1, 4.2, 5.1) is the worker's: `Policy.matches()` filters MX hosts, and with
  mode "enforce" each delivery requires STARTTLS with a certificate verified for the MX name;
  a host that fails is skipped, and when none is left the recipients are deferred (4.7.5).
  With "testing" delivery goes ahead as usual and the would-be failure is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from postar.queue.mx import DNSError, Resolver

log = logging.getLogger("postar.queue.mtasts")

MAX_POLICY_BYTES = 64 * 1024  # a policy is a few lines; anything larger is not one
MAX_AGE_LIMIT = 31_557_600  # RFC 8461 3.2: max_age is at most one year
FETCH_TIMEOUT = 60.0  # RFC 8461 3.3 suggests senders allow about a minute
FAILED_FETCH_SECONDS = 300.0  # how long a failed fetch (with nothing cached) is remembered
_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")  # RFC 8461 3.1: sts-id = 1*32(ALPHA / DIGIT)


class PolicyError(Exception):
    """The policy could not be fetched or is not a valid policy."""


@dataclass(frozen=True)
class Policy:
    id: str  # the TXT record's id this policy was fetched for
    mode: str  # "enforce" | "testing" | "none"
    mx: tuple[str, ...]  # patterns: "mail.example.com" or "*.example.net"
    max_age: int
    fetched: float

    def expired(self, now: float) -> bool:
        return now >= self.fetched + self.max_age

    def matches(self, host: str) -> bool:
        """RFC 8461 4.1: an exact name, or "*." plus a suffix matching exactly one more label
        on the left; case-insensitive, trailing dots ignored."""
        host = host.rstrip(".").lower()
        for pattern in self.mx:
            if pattern.startswith("*."):
                label, _, rest = host.partition(".")
                if label and rest == pattern[2:]:
                    return True
            elif host == pattern:
                return True
        return False


def parse_txt(records: list[str]) -> str | None:
    """The id of the one valid STSv1 record, or None (RFC 8461 3.1)."""
    sts = [r for r in records if re.match(r"^v=STSv1\s*(;|$)", r)]
    if len(sts) != 1:
        return None  # none, or several: "no policy" (3.1)
    fields: dict[str, str] = {}
    for part in sts[0].split(";"):
        key, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    sts_id = fields.get("id", "")
    return sts_id if _ID.match(sts_id) else None


def parse_policy(text: str, sts_id: str, now: float) -> Policy:
    """RFC 8461 3.2: "key: value" lines (CRLF or LF); unknown keys ignored; version, mode and
    max_age required, and at least one mx unless mode is none."""
    fields: dict[str, str] = {}
    mx: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise PolicyError(f"malformed policy line {line[:80]!r}")
        key, value = key.strip(), value.strip()
        if key == "mx":
            mx.append(value.rstrip(".").lower())
        else:
            fields.setdefault(key, value)
    if fields.get("version") != "STSv1":
        raise PolicyError("policy version is not STSv1")
    mode = fields.get("mode", "")
    if mode not in ("enforce", "testing", "none"):
        raise PolicyError(f"unknown policy mode {mode[:20]!r}")
    max_age_text = fields.get("max_age", "")
    if not max_age_text.isdigit() or len(max_age_text) > 10:
        raise PolicyError("policy max_age missing or not a number")
    if not mx and mode != "none":
        raise PolicyError("policy names no mx")
    max_age = min(int(max_age_text), MAX_AGE_LIMIT)
    return Policy(sts_id, mode, tuple(mx), max_age, now)


def _decode_chunked(body: bytes) -> bytes:
    out = bytearray()
    while True:
        size_line, sep, body = body.partition(b"\r\n")
        if not sep:
            raise PolicyError("truncated chunked body")
        size = int(size_line.split(b";")[0].strip() or b"x", 16)
        if size == 0:
            return bytes(out)
        out += body[:size]
        body = body[size + 2 :]


class HTTPSFetcher:
    """The policy fetch: one HTTP/1.0 GET over verified TLS (stdlib only; no redirects to
    follow, no keep-alive, no caching, so an HTTP library would buy little)."""

    def __init__(self, resolver: Resolver, *, port: int = 443, cafile: str | None = None) -> None:
        self.resolver = resolver
        self.port = port
        self.context = ssl.create_default_context(cafile=cafile)

    async def __call__(self, domain: str) -> str:
        host = f"mta-sts.{domain}"
        try:
            addresses = await self.resolver.addresses(host)
        except DNSError as exc:
            raise PolicyError(f"{host}: {exc}") from exc
        if not addresses:
            raise PolicyError(f"{host} has no address")
        request = (
            f"GET /.well-known/mta-sts.txt HTTP/1.0\r\nHost: {host}\r\n"
            "User-Agent: postar\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
        ).encode()
        errors = []
        for address in addresses:
            try:
                async with asyncio.timeout(FETCH_TIMEOUT):
                    return await self._get(address, host, request)
            except (OSError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError) as exc:
                errors.append(f"{address}: {exc!r}")
        raise PolicyError(f"fetching the policy from {host} failed: {'; '.join(errors)}")

    async def _get(self, address: str, host: str, request: bytes) -> str:
        # server_hostname: the certificate must be valid for mta-sts.<domain> (RFC 8461 3.3).
        reader, writer = await asyncio.open_connection(
            address, self.port, ssl=self.context, server_hostname=host
        )
        try:
            writer.write(request)
            await writer.drain()
            data = bytearray()
            while len(data) <= MAX_POLICY_BYTES + 8192:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                data += chunk
            else:
                raise PolicyError(f"{host}: policy response too large")
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
        head, sep, body = bytes(data).partition(b"\r\n\r\n")
        if not sep:
            raise PolicyError(f"{host}: no complete HTTP response")
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or status[1] != "200":
            # RFC 8461 3.3: 3xx redirects must not be followed; anything but 200 is no policy.
            raise PolicyError(f"{host} answered {lines[0][:80]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "text/plain":
            raise PolicyError(f"{host}: policy served as {media_type or 'no type'!r}")
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = _decode_chunked(body)
        elif "content-length" in headers and headers["content-length"].isdigit():
            length = int(headers["content-length"])
            if len(body) < length:
                raise PolicyError(f"{host}: policy body truncated")
            body = body[:length]
        if len(body) > MAX_POLICY_BYTES:
            raise PolicyError(f"{host}: policy too large")
        return body.decode("utf-8", "replace")


class PolicyCache:
    """The policy in force for each domain, per RFC 8461 3.3 and 5.1 (see the module doc)."""

    def __init__(
        self,
        resolver: Resolver,
        fetch: Callable[[str], Awaitable[str]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.resolver = resolver
        self._fetch = fetch
        self.clock = clock
        self._policies: dict[str, Policy] = {}
        self._failed: dict[tuple[str, str], float] = {}  # (domain, id) -> until
        self._locks: dict[str, asyncio.Lock] = {}

    def cached(self, domain: str) -> Policy | None:
        policy = self._policies.get(domain)
        if policy is not None and policy.expired(self.clock()):
            del self._policies[domain]
            return None
        return policy

    async def policy(self, domain: str) -> Policy | None:
        """The policy to apply to delivery for `domain` now; None when there is none."""
        domain = domain.rstrip(".").lower()
        lock = self._locks.setdefault(domain, asyncio.Lock())
        # One lookup and fetch per domain at a time: concurrent deliveries wait for it.
        async with lock:
            policy = await self._policy(domain)
        # RFC 8461 3.2: mode "none" withdraws a policy; it is cached so its id is not refetched.
        return policy if policy is not None and policy.mode != "none" else None

    async def _policy(self, domain: str) -> Policy | None:
        cached = self.cached(domain)
        try:
            sts_id = parse_txt(await self.resolver.txt(f"_mta-sts.{domain}"))
        except DNSError as exc:
            log.info("mta-sts txt lookup failed", extra={"domain": domain, "error": str(exc)})
            return cached
        if sts_id is None:
            return cached  # RFC 8461 5.1: a cached policy outlives a vanished record
        if cached is not None and cached.id == sts_id:
            return cached
        now = self.clock()
        if self._failed.get((domain, sts_id), 0.0) > now:
            return cached
        try:
            policy = parse_policy(await self._fetch(domain), sts_id, now)
        except PolicyError as exc:
            log.warning("mta-sts policy fetch failed", extra={"domain": domain, "error": str(exc)})
            self._failed[(domain, sts_id)] = now + FAILED_FETCH_SECONDS
            return cached
        self._failed.pop((domain, sts_id), None)
        log.info(
            "mta-sts policy",
            extra={"domain": domain, "id": sts_id, "mode": policy.mode, "mx": ",".join(policy.mx)},
        )
        self._policies[domain] = policy
        return policy
