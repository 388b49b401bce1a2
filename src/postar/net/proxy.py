"""The PROXY protocol, versions 1 and 2: a sans-I/O header parser (and encoders for tests
and outbound use).

Specification: HAProxy's doc/proxy-protocol.txt (2020/03/05). The parser takes bytes as they
arrive and says how many of them belong to the header, so the caller can consume exactly the
header from the socket and leave everything after it (a TLS ClientHello, an SMTP command)
untouched for whoever reads next.

Rules enforced here, by section:
- 2.1: v1 is one US-ASCII line of at most 107 bytes ending in CRLF; single spaces; TCP4/TCP6
  addresses in canonical form without leading zeros; ports 0..65535 without leading zeros; a
  lone CR or LF is invalid; for UNKNOWN everything up to CRLF is ignored.
- 2.2: v2 is the 12-byte signature, version 2 in the high nibble of byte 13 and command LOCAL
  (0) or PROXY (1) in its low nibble, family/transport in byte 14, a 16-bit length; the header
  is exactly 16 + length bytes. LOCAL: addresses are ignored. Unsupported families and
  transports (AF_UNSPEC, AF_UNIX, DGRAM) fall back to the real endpoints, as the spec allows.
- TLVs after the address block are parsed and kept; a TLV overrunning the header is invalid.
  The CRC32C TLV is kept but not verified (no CRC32C in the standard library).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Literal

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
V1_MAX_LENGTH = 107  # section 2.1: the longest legal line, CRLF included
V2_HEADER_LENGTH = 16

PP2_TYPE_ALPN = 0x01
PP2_TYPE_AUTHORITY = 0x02
PP2_TYPE_CRC32C = 0x03
PP2_TYPE_NOOP = 0x04
PP2_TYPE_UNIQUE_ID = 0x05
PP2_TYPE_SSL = 0x20

_V2_FAMILIES = {0x0: "UNSPEC", 0x1: "INET", 0x2: "INET6", 0x3: "UNIX"}
_V2_ADDRESS_LENGTH = {"INET": 12, "INET6": 36, "UNIX": 216}


class ProxyHeaderError(ValueError):
    """The bytes are not a valid PROXY header; the connection must be dropped (section 2.1)."""


@dataclass(frozen=True, slots=True)
class ProxyInfo:
    """A parsed PROXY header.

    `source` and `destination` are set only for proxied TCP over IPv4/IPv6; when they are None
    (LOCAL, UNKNOWN, AF_UNSPEC, AF_UNIX, UDP) the receiver uses the real connection endpoints.
    """

    version: Literal[1, 2]
    command: Literal["PROXY", "LOCAL"]
    family: str  # "TCP4", "TCP6", "UDP4", "UDP6", "UNIX", "UNKNOWN"
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None
    tlvs: tuple[tuple[int, bytes], ...] = ()

    def tlv(self, type_: int) -> bytes | None:
        for t, value in self.tlvs:
            if t == type_:
                return value
        return None


class ProxyHeaderParser:
    """Incremental parser: ``feed(data)`` returns how many bytes of `data` were header bytes.

    When ``result`` is set the header is complete and any bytes of `data` past the returned
    count belong to the application protocol. Until then every fed byte was consumed. Raises
    ProxyHeaderError as soon as the bytes cannot start a valid header.
    """

    __slots__ = ("_buf", "result")

    def __init__(self) -> None:
        self._buf = bytearray()
        self.result: ProxyInfo | None = None

    def feed(self, data: bytes) -> int:
        if self.result is not None:
            return 0
        buf = self._buf
        start = len(buf)
        # Decide the version from the first bytes (section 2.2, "Identifying the protocol
        # version"), failing early: a peer speaking SMTP or TLS here is dropped at once.
        probe = bytes(buf[:12]) + data[: max(0, 12 - start)]
        if probe[:1] == b"P":
            if not V1_PREFIX.startswith(probe[:6]):
                raise ProxyHeaderError("not a PROXY v1 header")
            return self._feed_v1(data, start)
        if probe[:1] == b"\r":
            if not V2_SIGNATURE.startswith(probe[:12]):
                raise ProxyHeaderError("not a PROXY v2 signature")
            return self._feed_v2(data, start)
        if not probe:
            return 0
        raise ProxyHeaderError("no PROXY header")

    def _feed_v1(self, data: bytes, start: int) -> int:
        chunk = data[: V1_MAX_LENGTH - start]
        lf = chunk.find(b"\n")
        if lf < 0:
            # Section 2.1: a lone CR never ends (or sits inside) the line; only the last byte
            # seen so far may be a CR, waiting for its LF.
            if b"\r" in (bytes(self._buf[-1:]) + chunk)[:-1]:
                raise ProxyHeaderError("PROXY v1 line has a CR without LF")
            if start + len(chunk) >= V1_MAX_LENGTH:
                raise ProxyHeaderError("PROXY v1 line longer than 107 bytes")
            self._buf += chunk
            return len(chunk)
        self._buf += chunk[: lf + 1]
        line = bytes(self._buf)
        if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
            raise ProxyHeaderError("PROXY v1 line must end in CRLF")
        self.result = parse_v1_line(line)
        self._buf = bytearray()
        return lf + 1

    def _feed_v2(self, data: bytes, start: int) -> int:
        buf = self._buf
        if start < V2_HEADER_LENGTH:
            need = V2_HEADER_LENGTH - start
            buf += data[:need]
            used = min(need, len(data))
            if len(buf) < V2_HEADER_LENGTH:
                return used
            _check_v2_fixed(bytes(buf))
        else:
            used = 0
        (length,) = struct.unpack_from("!H", buf, 14)
        total = V2_HEADER_LENGTH + length
        take = min(total - len(buf), len(data) - used)
        buf += data[used : used + take]
        used += take
        if len(buf) == total:
            self.result = parse_v2_header(bytes(buf))
            self._buf = bytearray()
        return used


def _parse_port(text: str) -> int:
    # Section 2.1: decimal, 0..65535, no leading zeros (no octal confusion).
    if not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        raise ProxyHeaderError(f"bad port {text!r}")
    port = int(text)
    if port > 65535:
        raise ProxyHeaderError(f"port out of range {text!r}")
    return port


def parse_v1_line(line: bytes) -> ProxyInfo:
    """Parse one complete v1 line, CRLF included."""
    if len(line) > V1_MAX_LENGTH or not line.endswith(b"\r\n") or not line.startswith(V1_PREFIX):
        raise ProxyHeaderError("not a PROXY v1 line")
    try:
        text = line[:-2].decode("ascii")
    except UnicodeDecodeError as exc:
        raise ProxyHeaderError("PROXY v1 line is not US-ASCII") from exc
    parts = text.split(" ")
    if parts[1:2] == ["UNKNOWN"]:
        # Section 2.1: for UNKNOWN the receiver ignores the rest and uses the real endpoints.
        return ProxyInfo(version=1, command="PROXY", family="UNKNOWN")
    if len(parts) != 6:
        raise ProxyHeaderError("PROXY v1 line must have 6 single-space separated fields")
    _, family, src, dst, sport, dport = parts
    address_type: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address]
    if family == "TCP4":
        address_type = ipaddress.IPv4Address
    elif family == "TCP6":
        address_type = ipaddress.IPv6Address
    else:
        raise ProxyHeaderError(f"unknown PROXY v1 protocol {family!r}")
    if "%" in src or "%" in dst:
        raise ProxyHeaderError("scoped addresses are not allowed in PROXY v1")
    try:
        # ipaddress rejects IPv4 leading zeros (since 3.9.5) and requires exactly 128 bits.
        src_ip = address_type(src)
        dst_ip = address_type(dst)
    except ValueError as exc:
        raise ProxyHeaderError(f"bad {family} address") from exc
    return ProxyInfo(
        version=1,
        command="PROXY",
        family=family,
        source=(str(src_ip), _parse_port(sport)),
        destination=(str(dst_ip), _parse_port(dport)),
    )


def _check_v2_fixed(head: bytes) -> None:
    if head[:12] != V2_SIGNATURE:
        raise ProxyHeaderError("not a PROXY v2 signature")
    if head[12] >> 4 != 2:
        raise ProxyHeaderError("PROXY v2 header with a version other than 2")
    if head[12] & 0x0F not in (0, 1):
        raise ProxyHeaderError("PROXY v2 header with an unassigned command")
    if head[13] >> 4 not in _V2_FAMILIES or head[13] & 0x0F not in (0, 1, 2):
        raise ProxyHeaderError("PROXY v2 header with an unspecified family or transport")


def _parse_tlvs(data: bytes) -> tuple[tuple[int, bytes], ...]:
    tlvs: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        if pos + 3 > len(data):
            raise ProxyHeaderError("truncated TLV in PROXY v2 header")
        type_ = data[pos]
        (length,) = struct.unpack_from("!H", data, pos + 1)
        end = pos + 3 + length
        if end > len(data):
            raise ProxyHeaderError("TLV overruns the PROXY v2 header")
        tlvs.append((type_, data[pos + 3 : end]))
        pos = end
    return tuple(tlvs)


def parse_v2_header(header: bytes) -> ProxyInfo:
    """Parse one complete v2 header (exactly 16 + length bytes)."""
    if len(header) < V2_HEADER_LENGTH:
        raise ProxyHeaderError("truncated PROXY v2 header")
    _check_v2_fixed(header[:V2_HEADER_LENGTH])
    (length,) = struct.unpack_from("!H", header, 14)
    if len(header) != V2_HEADER_LENGTH + length:
        raise ProxyHeaderError("PROXY v2 length does not match the header")
    body = header[V2_HEADER_LENGTH:]
    command: Literal["PROXY", "LOCAL"] = "LOCAL" if header[12] & 0x0F == 0 else "PROXY"
    family = _V2_FAMILIES[header[13] >> 4]
    transport = header[13] & 0x0F
    if command == "LOCAL":
        # Section 2.2: a LOCAL connection (health check) uses the real endpoints; the address
        # block, whatever its family, is skipped by length and ignored.
        return ProxyInfo(version=2, command="LOCAL", family="UNKNOWN")
    address_length = _V2_ADDRESS_LENGTH.get(family, 0)
    if len(body) < address_length:
        raise ProxyHeaderError(f"PROXY v2 address block too short for {family}")
    tlvs = _parse_tlvs(body[address_length:])
    if family == "UNIX":
        return ProxyInfo(version=2, command="PROXY", family="UNIX", tlvs=tlvs)
    if family == "UNSPEC" or transport == 0:
        return ProxyInfo(version=2, command="PROXY", family="UNKNOWN", tlvs=tlvs)
    size = 4 if family == "INET" else 16
    src = ipaddress.ip_address(body[:size])
    dst = ipaddress.ip_address(body[size : 2 * size])
    sport, dport = struct.unpack_from("!HH", body, 2 * size)
    name = ("TCP" if transport == 1 else "UDP") + ("4" if family == "INET" else "6")
    if transport != 1:
        # A datagram flow on a stream listener: nothing to trust, keep the real endpoints.
        return ProxyInfo(version=2, command="PROXY", family=name, tlvs=tlvs)
    return ProxyInfo(
        version=2,
        command="PROXY",
        family=name,
        source=(str(src), sport),
        destination=(str(dst), dport),
        tlvs=tlvs,
    )


def format_v1_header(source: tuple[str, int] | None, destination: tuple[str, int] | None) -> bytes:
    """A v1 line for a TCP connection, or "PROXY UNKNOWN" when either end is None."""
    if source is None or destination is None:
        return b"PROXY UNKNOWN\r\n"
    src = ipaddress.ip_address(source[0])
    dst = ipaddress.ip_address(destination[0])
    if src.version != dst.version:
        raise ValueError("source and destination must be the same address family")
    family = "TCP4" if src.version == 4 else "TCP6"
    return f"PROXY {family} {src} {dst} {source[1]} {destination[1]}\r\n".encode("ascii")


def format_v2_header(
    source: tuple[str, int] | None,
    destination: tuple[str, int] | None,
    *,
    local: bool = False,
    tlvs: tuple[tuple[int, bytes], ...] = (),
) -> bytes:
    """A v2 header: PROXY over TCP4/TCP6, or LOCAL (or AF_UNSPEC when an end is None)."""
    tlv_bytes = b"".join(struct.pack("!BH", t, len(v)) + v for t, v in tlvs)
    if local or source is None or destination is None:
        ver_cmd = 0x20 if local else 0x21
        return V2_SIGNATURE + struct.pack("!BBH", ver_cmd, 0x00, len(tlv_bytes)) + tlv_bytes
    src = ipaddress.ip_address(source[0])
    dst = ipaddress.ip_address(destination[0])
    if src.version != dst.version:
        raise ValueError("source and destination must be the same address family")
    fam = 0x11 if src.version == 4 else 0x21
    block = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1])
    body = block + tlv_bytes
    return V2_SIGNATURE + struct.pack("!BBH", 0x21, fam, len(body)) + body
