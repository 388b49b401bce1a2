"""`postar dns`: the zone text a domain publishes."""

from __future__ import annotations

from pathlib import Path

from postar.config import Config, ListenAddress
from postar.queue.dkim import create_keys
from postar.queue.records import records_for, zone_text


def test_records(tmp_path: Path) -> None:
    config = Config(
        hostname="mail.example.org",
        data_dir=tmp_path,
        listen={"submission": ListenAddress("127.0.0.1", 10587)},
    )
    keys = create_keys(tmp_path, "Example.org")
    assert create_keys(tmp_path, "example.org") == keys  # made once, then kept
    by_name = {(r.name, r.rtype): r for r in records_for(config, "example.org", keys)}
    assert by_name[("example.org", "MX")].value == "10 mail.example.org."
    assert by_name[("example.org", "TXT")].value == "v=spf1 mx -all"
    assert by_name[("_dmarc.example.org", "TXT")].value.startswith("v=DMARC1; p=")
    assert by_name[("_smtp._tls.example.org", "TXT")].value.startswith("v=TLSRPTv1; rua=")
    # The standard port, not the listener's: clients on the Internet use 587.
    assert by_name[("_submission._tcp.example.org", "SRV")].value == "0 1 587 mail.example.org."
    assert by_name[("_imap._tcp.example.org", "SRV")].value == "0 0 0 ."  # RFC 6186 3.4
    rsa = next(k for k in keys if k.kind == "rsa")
    line = by_name[(rsa.record_name, "TXT")].zone_line()
    strings = line.split(" IN TXT ", 1)[1]
    # RFC 1035: no character-string over 255 bytes; joined they give the record back.
    parts = [p.strip('"') for p in strings.split('" "')]
    assert all(len(p) <= 255 for p in parts) and "".join(parts) == rsa.record_value
    text = zone_text(config, "example.org", keys)
    assert "mode: testing" in text and text.count("._domainkey.example.org.") == 2

    # RFC 8461 3.1: the policy id is stable while the policy is, and changes with it.
    def sts_id(c: Config) -> str:
        return next(
            r.value for r in records_for(c, "example.org", keys) if r.name[:9] == "_mta-sts."
        )

    assert sts_id(config) == sts_id(config)
    assert sts_id(config) != sts_id(Config(hostname="mx2.example.org", data_dir=tmp_path))
