"""The shortest path through the server: smtplib delivers, poplib downloads."""

import poplib
import smtplib

from tests.support.server import DOMAIN, PASSWORD, PostarServer


def test_smtp_in_pop3_out(postar: PostarServer) -> None:
    body = b"Subject: hello\r\nFrom: x@remote.test\r\n\r\nline one\r\n.leading dot\r\n"
    with smtplib.SMTP("127.0.0.1", postar.ports["smtp"], timeout=10) as smtp:
        smtp.sendmail("x@remote.test", [f"alice@{DOMAIN}"], body)
    pop = poplib.POP3("127.0.0.1", postar.ports["pop3"], timeout=10)
    pop.user(f"alice@{DOMAIN}")
    pop.pass_(PASSWORD)
    count, _size = pop.stat()
    assert count == 1
    _resp, lines, _octets = pop.retr(1)
    raw = b"\r\n".join(lines) + b"\r\n"
    assert raw.endswith(body)
    assert raw.startswith(b"Return-Path: <x@remote.test>\r\nReceived: from ")
    pop.quit()
