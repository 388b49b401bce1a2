"""Side-by-side benchmarks of Postar against Dovecot and Postfix from Debian's packages.

Run with ``bench/run`` (see bench/README.md). Nothing here is imported by the server or by CI.
"""
