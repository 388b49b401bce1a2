"""Configuration of a private Postfix instance on loopback, shared by the interoperation tests
(tests/support/postfix.py) and the benchmark (bench/targets/postfix.py).

Everything lives under one root directory: etc/ (config_directory), spool/, data/, mail/
(Maildirs written by virtual(8)) and the maillog. Only postfix-files is read from the system's
/etc/postfix (meta_directory), which is where Debian keeps it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

# chroot "n" everywhere: a chroot would need copies of /etc files inside our queue directory.
MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
{smtp_addr} inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def master_cf(port: int) -> str:
    return MASTER_CF.format(smtp_addr=f"127.0.0.1:{port}")


def main_cf(
    root: Path,
    *,
    hostname: str,
    mydomain: str,
    mailbox_domains: Iterable[str],
    uid: int,
    gid: int,
    relayhost: str = "",
    written_by: str,
    extra: str = "",
) -> str:
    """main.cf of an instance rooted at root: SMTP on 127.0.0.1 only, relaying for loopback,
    virtual(8) delivery into Maildirs under root/mail; `extra` is appended as is."""
    return f"""\
# A private instance written by {written_by}.
compatibility_level = 3.6
queue_directory = {root}/spool
data_directory = {root}/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = {hostname}
mydomain = {mydomain}
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
local_recipient_maps =
relayhost = {relayhost}
append_dot_mydomain = no
biff = no
maillog_file = {root}/maillog
# postlogd writes only under these prefixes (default /var, /dev/stdout).
maillog_file_prefixes = {root}
# Delivery into Maildir (a trailing slash in the map) under root/mail.
virtual_mailbox_domains = {" ".join(mailbox_domains)}
virtual_mailbox_base = {root}/mail
virtual_mailbox_maps = texthash:{root}/etc/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = 100
{extra}"""


def vmailbox(addresses: Iterable[str]) -> str:
    """The virtual_mailbox_maps table: each address to domain/local/ (a Maildir)."""
    return "".join(f"{a} {a.split('@')[1]}/{a.split('@')[0]}/\n" for a in addresses)
