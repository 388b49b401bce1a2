"""Outbound delivery: the worker (worker.py) takes due entries from the store's queue, finds
the next hop (mx.py, or a smarthost/route from [relay]), signs (dkim.py), relays with our SMTP
client (client.py over transport.py), and reports failures and delays (dsn.py).

The SMTP server never imports this package: it enqueues into the store, and the worker reads
from there (docs/ARCHITECTURE.md).
"""
