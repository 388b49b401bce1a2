"""Where mail for a domain goes: MX lookup behind our own Resolver interface.

RFC 5321 section 5.1: look up MX records; try them in order of preference, shuffling hosts of
equal preference; with no MX records (but the domain exists) the domain itself is the only
host ("implicit MX") and its A/AAAA records are used. RFC 7505: a single MX with preference 0
and the root "." as exchange ("null MX") says the domain accepts no mail: a permanent failure
(556 5.1.10), never retried. A domain that does not exist (NXDOMAIN) fails permanently too
(5.1.2); a DNS timeout or SERVFAIL is a temporary failure (retried later).

The Resolver protocol is what the worker and `postar dns` see; DNSPythonResolver implements it
with dnspython's async resolver (with its cache), using `[dns] nameservers` when configured so
tests can point it at a DNS server of their own on loopback.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from postar.config import DNSConfig


class DNSError(Exception):
    """A lookup failed. `permanent` tells a bounce (5xx) from a retry (4xx)."""

    def __init__(self, message: str, *, permanent: bool, enhanced: str) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.enhanced = enhanced


class Resolver(Protocol):
    async def mx(self, domain: str) -> list[tuple[int, str]] | None:
        """(preference, exchange) pairs; [] if the domain exists without MX; None if NXDOMAIN.
        Exchanges are absolute names without the trailing dot ("" for the root)."""
        ...

    async def addresses(self, host: str) -> list[str]:
        """A and AAAA addresses of host (IPv4 first); [] when there are none."""
        ...

    async def txt(self, name: str) -> list[str]:
        """TXT records of name, each one's strings joined; [] when there are none."""
        ...


@dataclass(frozen=True)
class MXHost:
    name: str
    preference: int


def _nameserver(text: str) -> dns.nameserver.Do53Nameserver:
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    else:
        host, port = text, 53  # a bare IPv6 address or an IPv4 address without port
    ipaddress.ip_address(host)  # dnspython wants addresses, not names
    return dns.nameserver.Do53Nameserver(host, port)


class DNSPythonResolver:
    """The production Resolver: dnspython's async resolver with an in-process cache."""

    def __init__(self, config: DNSConfig) -> None:
        if config.nameservers:
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = [_nameserver(n) for n in config.nameservers]
        else:
            self._resolver = dns.asyncresolver.Resolver()
        self._resolver.lifetime = config.timeout
        self._resolver.cache = dns.resolver.Cache()

    async def _query(self, name: str, rdtype: str) -> dns.resolver.Answer | None:
        try:
            return await self._resolver.resolve(name, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            raise
        except dns.resolver.NoAnswer:
            return None
        except (dns.resolver.NoNameservers, dns.exception.Timeout) as exc:
            raise DNSError(
                f"DNS {rdtype} lookup of {name} failed: {exc}", permanent=False, enhanced="4.4.3"
            ) from exc

    async def mx(self, domain: str) -> list[tuple[int, str]] | None:
        try:
            answer = await self._query(domain, "MX")
        except dns.resolver.NXDOMAIN:
            return None
        if answer is None:
            return []
        return [
            (int(r.preference), r.exchange.to_text(omit_final_dot=True).rstrip(".")) for r in answer
        ]

    async def addresses(self, host: str) -> list[str]:
        out: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                answer = await self._query(host, rdtype)
            except dns.resolver.NXDOMAIN:
                return out
            if answer is not None:
                out.extend(r.address for r in answer)
        return out

    async def txt(self, name: str) -> list[str]:
        try:
            answer = await self._query(name, "TXT")
        except dns.resolver.NXDOMAIN:
            return []
        if answer is None:
            return []
        return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]


def address_literal(domain: str) -> str | None:
    """The address of a domain literal ("[192.0.2.1]", "[IPv6:2001:db8::1]"), RFC 5321 4.1.3."""
    if not (domain.startswith("[") and domain.endswith("]")):
        return None
    inner = domain[1:-1]
    if inner.lower().startswith("ipv6:"):
        inner = inner[5:]
    try:
        return str(ipaddress.ip_address(inner))
    except ValueError:
        return None


async def mx_hosts(resolver: Resolver, domain: str) -> list[MXHost]:
    """The hosts to try for `domain`, best first (RFC 5321 5.1); raises DNSError."""
    records = await resolver.mx(domain)
    if records is None:
        raise DNSError(f"domain {domain} does not exist", permanent=True, enhanced="5.1.2")
    if not records:
        # Implicit MX: the domain itself, if it has an address at all.
        return [MXHost(domain, 0)]
    # RFC 7505 section 3: a null MX is the only MX record; an "MX 0 ." among others is
    # a misconfiguration, and the "." entry is simply unusable.
    if any(name == "" for _, name in records):
        if len(records) == 1:
            raise DNSError(
                f"domain {domain} accepts no mail (null MX)", permanent=True, enhanced="5.1.10"
            )
        records = [r for r in records if r[1] != ""]
    shuffled = list(records)
    random.shuffle(shuffled)  # equal preferences in random order (RFC 5321 5.1)
    shuffled.sort(key=lambda r: r[0])
    seen: set[str] = set()
    hosts: list[MXHost] = []
    for pref, name in shuffled:
        if name.lower() not in seen:
            seen.add(name.lower())
            hosts.append(MXHost(name, pref))
    return hosts
