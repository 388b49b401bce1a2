"""A DNS server for tests on loopback (dnslib), answering from a table the test fills.

Names without a record answer NXDOMAIN unless another type exists for the name (then
NOERROR with no answer, "NODATA"), as a real authoritative server does; that difference is
what separates "no such domain" from "no MX, use the A record" (RFC 5321 5.1).
"""

from __future__ import annotations

import threading
from typing import Any

from dnslib import AAAA, MX, QTYPE, RCODE, RR, TXT, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from tests.support.server import free_port

_TYPES = {"A": A, "AAAA": AAAA, "MX": MX, "TXT": TXT}


class _TableResolver(BaseResolver):  # type: ignore[misc]
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[Any]] = {}
        self.servfail: set[str] = set()
        self.lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        with self.lock:
            if qname in self.servfail:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            answers = self.records.get((qname, qtype), [])
            exists = any(name == qname for name, _ in self.records)
        for rdata in answers:
            reply.add_answer(RR(qname, getattr(QTYPE, qtype), rdata=rdata, ttl=0))
        if not answers and not exists:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class LocalDNS:
    def __init__(self) -> None:
        self.port = free_port()
        self._resolver = _TableResolver()
        quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        self._server = DNSServer(self._resolver, port=self.port, address="127.0.0.1", logger=quiet)

    def __enter__(self) -> LocalDNS:
        self._server.start_thread()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add(self, name: str, rtype: str, value: Any) -> None:
        """add("example.org", "MX", (10, "mx1.example.org")), add(name, "A", "127.0.0.1"),
        add(name, "TXT", "v=spf1 -all")."""
        name = name.rstrip(".").lower()
        if rtype == "MX":
            pref, host = value
            rdata = MX(host.rstrip(".") + "." if host not in ("", ".") else ".", pref)
        elif rtype == "TXT":
            text = value.encode() if isinstance(value, str) else value
            rdata = TXT([text[i : i + 255] for i in range(0, len(text), 255)])
        else:
            rdata = _TYPES[rtype](value)
        with self._resolver.lock:
            self._resolver.records.setdefault((name, rtype), []).append(rdata)

    def clear(self, name: str, rtype: str) -> None:
        with self._resolver.lock:
            self._resolver.records.pop((name.rstrip(".").lower(), rtype), None)

    def servfail(self, name: str) -> None:
        with self._resolver.lock:
            self._resolver.servfail.add(name.rstrip(".").lower())
