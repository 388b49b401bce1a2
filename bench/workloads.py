"""What each workload does, in numbers: one plan for the full run and one for --quick.

Every count here is an upper bound and every load loop also has a deadline, so a slow or
stuck server shortens a run instead of stretching it; a shortfall is reported beside the figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WORKLOADS = ("smtp", "imap", "pop3", "memory", "large", "outbound")
TARGETS = ("postar", "dovecot", "postfix")
# Which reference each workload compares Postar with.
REFERENCE = {
    "smtp": "postfix",
    "imap": "dovecot",
    "pop3": "dovecot",
    "memory": "dovecot",
    "large": "dovecot",
    "outbound": "postfix",
}


@dataclass(frozen=True)
class SmtpCase:
    sessions: int
    size: int  # bytes; the corpus message nearest this size is sent
    messages: int

    @property
    def label(self) -> str:
        return f"{self.sessions} session{'s' if self.sessions > 1 else ''}, {self.size // 1024} KB"


@dataclass(frozen=True)
class Plan:
    name: str
    rounds: int
    smtp_cases: tuple[SmtpCase, ...]
    smtp_deadline: float  # seconds per case and round, delivery included
    imap_seconds: float  # measured window per round
    imap_processes: int  # load generator processes
    imap_clients: int  # concurrent clients per process
    imap_seed: int  # messages in each IMAP account before the mix starts
    pop3_messages: int
    memory_steps: tuple[int, ...]  # idle IDLE connections, cumulative
    memory_deadline: float  # seconds to open all steps' connections, per target
    large_messages: int
    large_load_deadline: float  # seconds for the bulk load of one target
    large_deadline: float  # seconds per FETCH/SEARCH command
    outbound_messages: int = 0  # queued per round, then released to smtp-sink
    outbound_connections: int = 20  # per destination, both servers
    outbound_deadline: float = 60.0  # seconds for the fill and again for the delivery
    # Wall-clock budget per workload, from when its first servers are up: rounds that would
    # begin after it are skipped (and said so), deadlines inside shrink to fit. With server
    # starts (each bounded too) the sum keeps the run under 23 minutes (full) or 4 (quick).
    budget: dict[str, float] = field(default_factory=dict)


FULL = Plan(
    name="full",
    rounds=3,
    smtp_cases=(
        SmtpCase(1, 4 * 1024, 400),
        SmtpCase(20, 4 * 1024, 2000),
        SmtpCase(1, 100 * 1024, 100),
        SmtpCase(20, 100 * 1024, 400),
    ),
    smtp_deadline=40.0,
    imap_seconds=20.0,
    imap_processes=2,
    imap_clients=25,
    imap_seed=500,
    pop3_messages=2000,
    memory_steps=(1000, 10000),
    memory_deadline=150.0,  # Dovecot needs ~110 s for 10,000 logins + forks here
    large_messages=100_000,
    large_load_deadline=240.0,
    large_deadline=60.0,
    outbound_messages=2000,
    outbound_deadline=60.0,
    # Sum: 1,070 s, so that with server starts and the corpus the run ends within 20 minutes.
    budget={"smtp": 200, "imap": 170, "pop3": 60, "memory": 220, "large": 300, "outbound": 120},
)

QUICK = Plan(
    name="quick",
    rounds=2,
    smtp_cases=(
        SmtpCase(1, 4 * 1024, 50),
        SmtpCase(20, 4 * 1024, 200),
        SmtpCase(1, 100 * 1024, 20),
        SmtpCase(20, 100 * 1024, 60),
    ),
    smtp_deadline=15.0,
    imap_seconds=5.0,
    imap_processes=2,
    imap_clients=6,
    imap_seed=100,
    pop3_messages=500,
    memory_steps=(200, 1000),
    memory_deadline=25.0,
    large_messages=10_000,
    large_load_deadline=40.0,
    large_deadline=20.0,
    outbound_messages=400,
    outbound_deadline=20.0,
    # Sum: 137 s, for a quick run within 3 minutes.
    budget={"smtp": 22, "imap": 35, "pop3": 10, "memory": 30, "large": 15, "outbound": 25},
)


def parse_list(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    """'smtp,pop3' -> ('smtp', 'pop3') in the canonical order; unknown names are an error."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise ValueError(f"unknown {what}: {', '.join(unknown)}; known: {', '.join(allowed)}")
    return tuple(n for n in allowed if n in names)
