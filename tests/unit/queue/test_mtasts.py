"""MTA-STS parsing, MX matching and the policy cache (RFC 8461), without sockets."""

from __future__ import annotations

import pytest

from postar.queue.mtasts import Policy, PolicyCache, PolicyError, parse_policy, parse_txt
from postar.queue.mx import DNSError

POLICY = (
    "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n"
    "max_age: 86400\r\n"
)


def test_txt_record_rules() -> None:
    # RFC 8461 3.1 examples and edge cases.
    assert parse_txt(["v=STSv1; id=20160831085700Z;"]) == "20160831085700Z"
    assert parse_txt(["v=STSv1;id=abc"]) == "abc"
    assert parse_txt(["v=spf1 -all", "v=STSv1; id=x1;"]) == "x1"  # other TXT ignored
    assert parse_txt([]) is None
    assert parse_txt(["v=STSv1; id=a;", "v=STSv1; id=b;"]) is None  # several: no policy
    assert parse_txt(["v=STSv1;"]) is None  # id required
    assert parse_txt(["v=STSv1; id=has-dash;"]) is None  # id is 1*32 ALPHA/DIGIT
    assert parse_txt(["v=STSv1; id=" + "a" * 33]) is None
    assert parse_txt(["v=STSv10; id=a"]) is None


def test_policy_parse_and_match() -> None:
    p = parse_policy(POLICY, "id1", 100.0)
    assert (p.mode, p.max_age, p.id) == ("enforce", 86400, "id1")
    assert p.matches("mail.example.com") and p.matches("MAIL.example.com.")
    # RFC 8461 4.1: the wildcard covers exactly one leftmost label.
    assert p.matches("mx1.example.net")
    assert not p.matches("example.net") and not p.matches("a.b.example.net")
    assert not p.matches("mail.example.com.evil.test")
    assert parse_policy(POLICY.replace("\r\n", "\n"), "id1", 0).mx == p.mx  # LF only too
    assert parse_policy(POLICY + "future_key: x\n", "i", 0).mode == "enforce"  # unknown ignored
    big = parse_policy(POLICY.replace("86400", "9999999999"), "i", 0)
    assert big.max_age == 31_557_600  # capped at one year (3.2)


@pytest.mark.parametrize(
    "text",
    [
        POLICY.replace("STSv1", "STSv2"),
        POLICY.replace("enforce", "strict"),
        POLICY.replace("max_age: 86400", "max_age: soon"),
        "version: STSv1\nmode: enforce\nmax_age: 60\n",  # no mx
        POLICY + "garbage without colon\n",
    ],
)
def test_invalid_policies(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_policy(text, "i", 0)


class FakeDNS:
    def __init__(self) -> None:
        self.txt_records: list[str] | DNSError = ["v=STSv1; id=one;"]

    async def mx(self, domain: str) -> list[tuple[int, str]] | None:
        return []

    async def addresses(self, host: str) -> list[str]:
        return []

    async def txt(self, name: str) -> list[str]:
        assert name == "_mta-sts.example.com"
        if isinstance(self.txt_records, DNSError):
            raise self.txt_records
        return self.txt_records


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_cache_by_id_and_max_age() -> None:
    dns, clock = FakeDNS(), Clock()
    fetched: list[str] = []
    body = {"text": POLICY.replace("86400", "600")}

    async def fetch(domain: str) -> str:
        fetched.append(domain)
        return body["text"]

    cache = PolicyCache(dns, fetch, clock)
    p = await cache.policy("Example.COM")
    assert isinstance(p, Policy) and p.mode == "enforce" and fetched == ["example.com"]
    # Same id: no fetch (RFC 8461 3.3).
    assert await cache.policy("example.com") == p and len(fetched) == 1
    # The TXT lookup fails, or the record vanishes: the unexpired policy still applies (5.1).
    dns.txt_records = DNSError("timeout", permanent=False, enhanced="4.4.3")
    assert await cache.policy("example.com") == p
    dns.txt_records = []
    assert await cache.policy("example.com") == p
    # ...until max_age runs out.
    clock.now += 601
    assert await cache.policy("example.com") is None
    # A new id makes us fetch again, and "testing" replaces "enforce".
    dns.txt_records = ["v=STSv1; id=two;"]
    body["text"] = POLICY.replace("enforce", "testing")
    p2 = await cache.policy("example.com")
    assert p2 is not None and p2.mode == "testing" and p2.id == "two" and len(fetched) == 2


async def test_failed_fetch_keeps_old_policy_and_is_not_retried_at_once() -> None:
    dns, clock = FakeDNS(), Clock()
    calls = {"n": 0}
    ok = {"v": True}

    async def fetch(domain: str) -> str:
        calls["n"] += 1
        if not ok["v"]:
            raise PolicyError("connection refused")
        return POLICY

    cache = PolicyCache(dns, fetch, clock)
    p = await cache.policy("example.com")
    assert p is not None
    ok["v"] = False
    dns.txt_records = ["v=STSv1; id=newer;"]
    # An attacker blocking the policy host cannot downgrade: the cached policy applies.
    assert await cache.policy("example.com") == p
    assert await cache.policy("example.com") == p
    assert calls["n"] == 2  # the failure for id "newer" is remembered, not retried per message
    clock.now += 301
    assert await cache.policy("example.com") == p and calls["n"] == 3


async def test_mode_none_withdraws_the_policy() -> None:
    dns = FakeDNS()

    async def fetch(domain: str) -> str:
        return "version: STSv1\nmode: none\nmax_age: 600\n"

    cache = PolicyCache(dns, fetch, Clock())
    assert await cache.policy("example.com") is None
