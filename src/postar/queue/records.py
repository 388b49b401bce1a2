"""The DNS records a domain needs to send and receive mail with us (`postar dns DOMAIN`).

Printed in zone-file syntax, one record per line, with a comment above each saying why:
MX (RFC 5321 5.1), SPF (RFC 7208), DKIM (RFC 6376 3.6.1, RFC 8463), DMARC (RFC 7489 6.3),
MTA-STS (RFC 8461 3.1, with the policy file it points to), TLS-RPT (RFC 8460 3), the SRV
records mail clients use to find their servers (RFC 6186, RFC 8314 5.1) and the autoconfig
and autodiscover names Thunderbird and Outlook try.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from postar.config import ROLE_STANDARD_PORT, Config
from postar.queue.dkim import DKIMKey


@dataclass(frozen=True)
class Record:
    name: str  # absolute, without the trailing dot
    rtype: str
    value: str  # TXT values unquoted; the zone text splits them into 255-byte strings
    comment: str

    def zone_line(self) -> str:
        value = self.value
        if self.rtype == "TXT":
            # RFC 1035 3.3.14 / RFC 7208 3.3: one character-string holds at most 255 bytes.
            parts = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
            value = " ".join(f'"{p}"' for p in parts)
        return f"{self.name}. 3600 IN {self.rtype} {value}"


# RFC 6186 section 3 (and RFC 8314 5.1 for submissions): service name -> our role.
SRV_SERVICES = (
    ("_submissions._tcp", "submissions"),
    ("_submission._tcp", "submission"),
    ("_imaps._tcp", "imaps"),
    ("_imap._tcp", "imap"),
    ("_pop3s._tcp", "pop3s"),
    ("_pop3._tcp", "pop3"),
)


def mta_sts_policy(config: Config) -> str:
    """The file served at https://mta-sts.DOMAIN/.well-known/mta-sts.txt (RFC 8461 3.2)."""
    # "testing" first: failures are reported (TLS-RPT) but mail still flows, until the
    # operator has seen the reports and switches to "enforce".
    return f"version: STSv1\nmode: testing\nmx: {config.hostname}\nmax_age: 604800\n"


def records_for(config: Config, domain: str, keys: list[DKIMKey]) -> list[Record]:
    domain = domain.lower().rstrip(".")
    host = config.hostname.rstrip(".")
    # RFC 8461 3.1: id must change whenever the policy does; a digest of it does exactly that.
    policy_id = hashlib.sha256(mta_sts_policy(config).encode()).hexdigest()[:20]
    out = [
        Record(domain, "MX", f"10 {host}.", "mail for the domain goes to this server"),
        Record(
            domain,
            "TXT",
            "v=spf1 mx -all" if not config.relay.smarthost else "v=spf1 mx ~all",
            "SPF: only the MX hosts send for the domain"
            + (" (add your smarthost's include: to it)" if config.relay.smarthost else ""),
        ),
    ]
    for key in keys:
        out.append(Record(key.record_name, "TXT", key.record_value, f"DKIM {key.kind} key"))
    out += [
        Record(
            f"_dmarc.{domain}",
            "TXT",
            f"v=DMARC1; p=quarantine; adkim=r; aspf=r; rua=mailto:postmaster@{domain}",
            "DMARC: what receivers do with mail failing SPF and DKIM, reports to postmaster",
        ),
        Record(
            f"_mta-sts.{domain}",
            "TXT",
            f"v=STSv1; id={policy_id}",
            "MTA-STS: a policy exists; change id= whenever the policy file changes",
        ),
        Record(
            f"mta-sts.{domain}",
            "CNAME",
            f"{host}.",
            "MTA-STS: a web server here must serve the policy below over HTTPS",
        ),
        Record(
            f"_smtp._tls.{domain}",
            "TXT",
            f"v=TLSRPTv1; rua=mailto:postmaster@{domain}",
            "TLS-RPT: where senders report TLS failures",
        ),
    ]
    for service, role in SRV_SERVICES:
        if role in config.listen:
            value = f"0 1 {ROLE_STANDARD_PORT[role]} {host}."
            note = f"clients find {role} here"
        else:
            value = "0 0 0 ."  # RFC 6186 section 3.4: the service is not offered
            note = f"{role} is not offered"
        out.append(Record(f"{service}.{domain}", "SRV", value, note))
    out += [
        Record(f"autoconfig.{domain}", "CNAME", f"{host}.", "Thunderbird autoconfig"),
        Record(f"autodiscover.{domain}", "CNAME", f"{host}.", "Outlook autodiscover"),
    ]
    return out


def zone_text(config: Config, domain: str, keys: list[DKIMKey]) -> str:
    lines: list[str] = []
    for record in records_for(config, domain, keys):
        lines.append(f"; {record.comment}")
        lines.append(record.zone_line())
    lines.append("")
    lines.append(f"; MTA-STS policy file for https://mta-sts.{domain}/.well-known/mta-sts.txt:")
    lines += [f";   {line}" for line in mta_sts_policy(config).splitlines()]
    return "\n".join(lines) + "\n"
