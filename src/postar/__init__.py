"""Postar: a complete mail server (SMTP, IMAP4, POP3, webmail) in one Python program."""

__version__ = "0.1.0"
