"""PROXY protocol parser, driven with bytes from the specification (HAProxy proxy-protocol.txt)."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postar.net.proxy import (
    PP2_TYPE_AUTHORITY,
    PP2_TYPE_UNIQUE_ID,
    V2_SIGNATURE,
    ProxyHeaderError,
    ProxyHeaderParser,
    ProxyInfo,
    format_v1_header,
    format_v2_header,
    parse_v1_line,
)


def parse_all(data: bytes) -> tuple[ProxyInfo | None, int]:
    parser = ProxyHeaderParser()
    used = parser.feed(data)
    return parser.result, used


def parse_bytewise(data: bytes) -> tuple[ProxyInfo | None, int]:
    parser = ProxyHeaderParser()
    used = 0
    for i in range(len(data)):
        used += parser.feed(data[i : i + 1])
        if parser.result is not None:
            break
    return parser.result, used


# ----------------------------------------------------------------------------- version 1


def test_v1_spec_example_before_http_request() -> None:
    # Section 2.1's example; the request after the line is not part of the header.
    line = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
    info, used = parse_all(line + b"GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n")
    assert used == len(line)
    assert info == ProxyInfo(
        version=1,
        command="PROXY",
        family="TCP4",
        source=("192.168.0.1", 56324),
        destination=("192.168.0.11", 443),
    )


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",  # 56 chars
        b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",  # 104 chars
        b"PROXY UNKNOWN\r\n",  # 15 chars
        b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",  # 107 chars, worst case
    ],
)
def test_v1_maximum_lengths_from_spec(line: bytes) -> None:
    info, used = parse_all(line + b"EHLO x\r\n")
    assert used == len(line) <= 107
    assert info is not None and info.version == 1


def test_v1_unknown_uses_real_endpoints() -> None:
    info, _ = parse_all(b"PROXY UNKNOWN\r\n")
    assert info is not None
    assert info.family == "UNKNOWN" and info.source is None and info.destination is None


def test_v1_tcp6_canonicalises_addresses() -> None:
    info, _ = parse_all(b"PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::1 4000 25\r\n")
    assert info is not None
    assert info.source == ("2001:db8::1", 4000)
    assert info.destination == ("::1", 25)


@pytest.mark.parametrize(
    "data",
    [
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n",  # LF alone
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\rX\r\n",  # CR alone
        b"PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n",  # port with leading zero
        b"PROXY TCP4 192.168.000.1 192.168.0.11 56324 443\r\n",  # octet with leading zero
        b"PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n",  # port out of range
        b"PROXY TCP4 192.168.0.1  192.168.0.11 56324 443\r\n",  # two spaces
        b"PROXY TCP4 ::1 ::1 1 2\r\n",  # family and address disagree
        b"PROXY TCP6 10.0.0.1 10.0.0.2 1 2\r\n",
        b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",  # scoped address
        b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n",  # unknown protocol
        b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n",  # missing field
        b"PROXY TCP4 1.2.3.4 1.2.3.4 +1 2\r\n",
        b"PROXY\r\n",
        b"proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n",  # the keyword is case-sensitive
        b"EHLO client.example\r\n",  # no header at all
        b"\x16\x03\x01\x02\x00\x01",  # a TLS ClientHello where the header should be
        b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\xff\r\n",  # not US-ASCII
    ],
)
def test_v1_invalid_lines_are_rejected(data: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        parse_all(data)
    with pytest.raises(ProxyHeaderError):
        parse_bytewise(data)


def test_v1_without_crlf_in_107_bytes_is_rejected() -> None:
    parser = ProxyHeaderParser()
    parser.feed(b"PROXY UNKNOWN " + b"x" * 80)
    with pytest.raises(ProxyHeaderError):
        parser.feed(b"x" * 20)


def test_v1_incomplete_waits_for_more() -> None:
    parser = ProxyHeaderParser()
    assert parser.feed(b"PROXY TCP4 1.2.3.4") == 18
    assert parser.result is None
    assert parser.feed(b" 5.6.7.8 1 2\r") == 13
    assert parser.result is None
    assert parser.feed(b"\nQUIT") == 1
    assert parser.result is not None
    assert parser.result.source == ("1.2.3.4", 1)


def test_parse_v1_line_rejects_overlong() -> None:
    with pytest.raises(ProxyHeaderError):
        parse_v1_line(b"PROXY UNKNOWN " + b"a" * 100 + b"\r\n")


# ----------------------------------------------------------------------------- version 2


def v2(ver_cmd: int, fam: int, body: bytes) -> bytes:
    return V2_SIGNATURE + struct.pack("!BBH", ver_cmd, fam, len(body)) + body


def test_v2_tcp4() -> None:
    # \x21 = version 2, PROXY; \x11 = TCP over IPv4; 12 address bytes.
    body = bytes([192, 0, 2, 1, 198, 51, 100, 7]) + struct.pack("!HH", 40000, 25)
    header = v2(0x21, 0x11, body)
    info, used = parse_all(header + b"EHLO x\r\n")
    assert used == 16 + 12
    assert info == ProxyInfo(
        version=2,
        command="PROXY",
        family="TCP4",
        source=("192.0.2.1", 40000),
        destination=("198.51.100.7", 25),
    )


def test_v2_tcp6_with_tlvs() -> None:
    src = bytes.fromhex("20010db8000000000000000000000001")
    dst = bytes.fromhex("20010db8000000000000000000000002")
    tlvs = struct.pack("!BH", PP2_TYPE_AUTHORITY, 16) + b"mail.example.org"
    tlvs += struct.pack("!BH", PP2_TYPE_UNIQUE_ID, 3) + b"abc"
    header = v2(0x21, 0x21, src + dst + struct.pack("!HH", 51000, 993) + tlvs)
    info, used = parse_all(header + b"\x16\x03\x01")
    assert used == len(header)
    assert info is not None
    assert info.family == "TCP6"
    assert info.source == ("2001:db8::1", 51000)
    assert info.destination == ("2001:db8::2", 993)
    assert info.tlv(PP2_TYPE_AUTHORITY) == b"mail.example.org"
    assert info.tlv(PP2_TYPE_UNIQUE_ID) == b"abc"
    assert info.tlv(0x30) is None


def test_v2_local_ignores_address_block() -> None:
    # Section 2.2: receivers must skip `length` bytes and must not assume zero for LOCAL.
    body = bytes(12)
    header = v2(0x20, 0x11, body)
    info, used = parse_all(header + b"rest")
    assert used == len(header)
    assert info == ProxyInfo(version=2, command="LOCAL", family="UNKNOWN")


def test_v2_local_unspec_empty() -> None:
    info, used = parse_all(v2(0x20, 0x00, b""))
    assert used == 16
    assert info is not None and info.command == "LOCAL" and info.source is None


@pytest.mark.parametrize(
    ("fam", "body", "family"),
    [
        (0x00, b"", "UNKNOWN"),  # AF_UNSPEC with PROXY: fall back to real endpoints
        (0x31, bytes(216), "UNIX"),
        (0x12, bytes(12), "UDP4"),
    ],
)
def test_v2_unsupported_families_fall_back(fam: int, body: bytes, family: str) -> None:
    info, _ = parse_all(v2(0x21, fam, body))
    assert info is not None
    assert info.family == family and info.source is None


@pytest.mark.parametrize(
    "header",
    [
        v2(0x11, 0x11, bytes(12)),  # version 1 in the binary format
        v2(0x22, 0x11, bytes(12)),  # unassigned command
        v2(0x21, 0x41, bytes(12)),  # unspecified family
        v2(0x21, 0x13, bytes(12)),  # unspecified transport
        v2(0x21, 0x11, bytes(8)),  # address block too short for TCP4
        v2(0x21, 0x21, bytes(12)),  # too short for TCP6
        v2(0x21, 0x11, bytes(12) + b"\x01\x00"),  # truncated TLV
        v2(0x21, 0x11, bytes(12) + b"\x01\x00\x05ab"),  # TLV overruns the header
        b"\r\n\r\n\x00\r\nQUIX\n" + b"\x21\x11\x00\x0c" + bytes(12),  # bad signature
    ],
)
def test_v2_invalid_headers_are_rejected(header: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        parse_all(header)
    with pytest.raises(ProxyHeaderError):
        parse_bytewise(header)


def test_v2_truncated_header_is_incomplete_not_accepted() -> None:
    header = format_v2_header(("192.0.2.1", 1), ("192.0.2.2", 2))
    parser = ProxyHeaderParser()
    assert parser.feed(header[:-1]) == len(header) - 1
    assert parser.result is None


def test_feed_after_result_consumes_nothing() -> None:
    parser = ProxyHeaderParser()
    parser.feed(b"PROXY UNKNOWN\r\n")
    assert parser.feed(b"more") == 0


# ----------------------------------------------------------------------------- encoders


def test_format_v1_matches_spec_example() -> None:
    assert (
        format_v1_header(("192.168.0.1", 56324), ("192.168.0.11", 443))
        == b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
    )
    assert format_v1_header(None, None) == b"PROXY UNKNOWN\r\n"


def test_format_v2_layout() -> None:
    header = format_v2_header(("10.0.0.1", 1234), ("10.0.0.2", 25))
    assert header[:12] == V2_SIGNATURE
    assert header[12:16] == b"\x21\x11\x00\x0c"
    assert header[16:] == bytes([10, 0, 0, 1, 10, 0, 0, 2]) + b"\x04\xd2\x00\x19"
    assert format_v2_header(None, None, local=True) == V2_SIGNATURE + b"\x20\x00\x00\x00"


def test_format_rejects_mixed_families() -> None:
    with pytest.raises(ValueError):
        format_v1_header(("10.0.0.1", 1), ("::1", 2))
    with pytest.raises(ValueError):
        format_v2_header(("10.0.0.1", 1), ("::1", 2))


ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
ports = st.integers(min_value=0, max_value=65535)


@given(
    version=st.sampled_from([1, 2]),
    addrs=st.one_of(st.tuples(ipv4, ipv4), st.tuples(ipv6, ipv6)),
    sport=ports,
    dport=ports,
    tail=st.binary(max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=6),
)
def test_any_split_gives_the_same_header(
    version: int,
    addrs: tuple[str, str],
    sport: int,
    dport: int,
    tail: bytes,
    cuts: list[int],
) -> None:
    src, dst = (addrs[0], sport), (addrs[1], dport)
    header = format_v1_header(src, dst) if version == 1 else format_v2_header(src, dst)
    stream = header + tail
    parser = ProxyHeaderParser()
    used = 0
    pos = 0
    for cut in [*sorted(c for c in cuts if c <= len(stream)), len(stream)]:
        if cut < pos:
            continue
        used += parser.feed(stream[pos:cut])
        pos = cut
        if parser.result is not None:
            break
    assert parser.result is not None
    assert used == len(header)
    assert parser.result.source == (str(ipaddress.ip_address(src[0])), sport)
    assert parser.result.destination is not None
    assert parser.result.destination[1] == dport


@given(st.binary(max_size=300))
def test_garbage_never_crashes_the_parser(data: bytes) -> None:
    parser = ProxyHeaderParser()
    try:
        used = parser.feed(data)
    except ProxyHeaderError:
        return
    assert 0 <= used <= len(data)
