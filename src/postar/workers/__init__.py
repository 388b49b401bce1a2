"""SMTP worker processes: the serving process hands them connections (pool.py, worker.py)."""
