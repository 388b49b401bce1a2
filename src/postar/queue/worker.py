"""The outbound worker: takes due queue entries from the store and relays them.

Theory of operation:
- The queue is the store's table; an entry leaves it only after every recipient has a final
  result (delivered, or failed and reported). A crash between a remote 250 and our update
  means one duplicate delivery at the next start, never a loss (RFC 5321 6.1 prefers a
  duplicate to a loss).
- One task per entry in flight, at most `max_in_flight` delivering at once; tasks that have
  their answers and wait for their result's commit (`_recording`) no longer count, since a
  commit's fsync can take longer than a delivery over a reused connection and they left
  connections idle; they have their own bound (RECORDING_MAX tasks, RECORDING_BYTES of
  messages held for DSNs), and many of them waiting make one group commit. The store hands
  out bounded pages (due_queue_entries), so a backlog of any size costs constant memory.
- A page is a snapshot: an entry whose attempt ended while the scan was under way (after its
  page may have been read) is left to the next scan, which reads its committed state; starting
  it from the page would repeat a finished delivery.
- Fair per destination (issue 4: a dead host's backlog must not starve others): each poll
  pages through the due entries (earliest first, at most SCAN_LIMIT of them) and starts an
  entry only while its destination has fewer than 2 x max_per_destination tasks in flight,
  so the room left goes to other destinations, however far down the queue their mail is.
  Domains whose destination is already at that cap are filtered out in the store's query
  (skip_domains), so a backlog of 10,000 for one destination is not parsed at every poll.
  Entries for a destination known to be dead are deferred by one queue update each, without
  reading the message or signing it (Postfix: "delivery temporarily suspended").
- Recipients of an entry are grouped by next hop: a [relay.routes] entry for the domain, else
  the smarthost, else the domain's MX hosts (mx.py). Each hop has a semaphore of
  `max_per_destination` connections, all hops together `max_connections`.
- Connection reuse: after a transaction a connection waits up to REUSE_IDLE seconds in a
  per-hop pool for the next message to the same hop (up to messages_per_connection).
- A hop that could not be reached is "dead" for a short while (Postfix's dead-destination
  cache): entries for it are deferred without connecting, so 10,000 messages to a dead host
  take no connection slots from other destinations.
- MTA-STS (RFC 8461, mtasts.py): for MX hops, the recipient domain's policy is looked up
  before taking a connection slot. "enforce": only MX hosts the policy names, STARTTLS with a
  certificate verified for the MX name, else the next host; none left means deferral (4.7.5),
  never a bounce, and never the dead-hop cache (the host answered). "testing": a verified
  session is tried first and its failure logged, then delivery proceeds opportunistically.
  Pooled connections remember whether they were verified; enforce reuses only those.
- Retries (RFC 5321 4.5.4.1): 4xx and connection failures retry after retry_first_seconds,
  doubling up to retry_max_seconds; a delay DSN after delay_warning_seconds, a failure DSN
  after give_up_seconds (RFC 3464, dsn.py). 5xx fails the recipient at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from postar.auth.directory import Directory
from postar.config import Config
from postar.mime.parser import parse_message
from postar.queue.client import (
    Envelope,
    SMTPClient,
    SMTPConnectionError,
    SMTPReply,
    SMTPUncertainError,
    TransactionResult,
    unverified_tls_context,
)
from postar.queue.dkim import Signer
from postar.queue.dsn import RecipientStatus, build_dsn, wants_notice
from postar.queue.mtasts import HTTPSFetcher, Policy, PolicyCache
from postar.queue.mx import DNSError, DNSPythonResolver, Resolver, address_literal, mx_hosts
from postar.store.interface import NotFound, QuotaExceeded, Store
from postar.store.model import DeliveryTarget, QueuedRecipient, QueueEntry

log = logging.getLogger("postar.queue")

# How often the store is asked for due entries when nothing wakes the worker: queue changes
# do (store.watch_queue: an enqueue here, `postar queue flush` from another process), so this
# poll is for retries coming due (and a fallback).
POLL_SECONDS = 1.0
REUSE_IDLE = 5.0  # seconds an idle connection waits in the pool for the next message
DEAD_HOP_SECONDS = 10.0  # a hop nobody could reach is not tried again for this long
SCAN_PAGE = 500  # due entries per store read, at most
SCAN_FIRST_PAGE = 8  # the smallest first read of a scan (pages then double up to SCAN_PAGE)
SCAN_LIMIT = 20_000  # due entries looked at per poll; the rest wait for the next poll
DEAD_DEFER_BATCH = 2_000  # entries of dead destinations deferred per poll
FIRST_READ = 64 * 1024  # bytes of a message read at once; larger ones take a second read
# Delivered entries waiting for their result's commit, at most: about one group commit's worth
# (the store writer's MAX_BATCH), since the commit's fsync, not the delivery, is then the
# slow part. A crash in that window repeats those deliveries once each (RFC 5321 6.1).
RECORDING_MAX = 500
RECORDING_BYTES = 64 * 1024 * 1024  # and the message bytes they hold (for a DSN), at most


@dataclass(frozen=True)
class Hop:
    """Where a group of recipients goes next."""

    key: str  # pool/concurrency key: "mx:domain", "route:host:port", "smarthost"
    domain: str | None = None  # MX lookup of this domain
    host: str | None = None  # fixed host (route, smarthost)
    port: int = 25
    smarthost: bool = False


@dataclass
class Outcome:
    """The result for one recipient after an attempt."""

    kind: str  # "delivered" | "failed" | "deferred"
    status: str  # enhanced status code
    text: str  # reply or error text, for last_error and the DSN
    remote_mta: str | None = None
    relayed: bool = False  # delivered to a peer without DSN support (RFC 3461 "relayed")


@dataclass
class _Pooled:
    client: SMTPClient
    since: float
    verified: bool = False  # STARTTLS with the certificate verified for the host name


@dataclass
class _HopState:
    sem: asyncio.Semaphore
    idle: list[_Pooled] = field(default_factory=list)
    dead_until: float = 0.0
    dead_error: str = ""


def _count_received(raw: bytes) -> int:
    end = raw.find(b"\r\n\r\n")
    header = raw[: end if end >= 0 else len(raw)].lower()
    return (1 if header.startswith(b"received:") else 0) + header.count(b"\r\nreceived:")


def _host_port(text: str, default_port: int) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    return text, default_port


def _reply_outcome(reply: SMTPReply, host: str) -> Outcome:
    status = reply.enhanced or ("5.0.0" if reply.permanent else "4.0.0")
    kind = "failed" if reply.permanent else "deferred"
    return Outcome(kind, status, f"{host} said: {reply}", host)


class OutboundWorker:
    def __init__(
        self,
        store: Store,
        config: Config,
        *,
        resolver: Resolver | None = None,
        signer: Signer | None = None,
        mta_sts: PolicyCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config
        self.qc = config.queue
        self.resolver: Resolver = resolver or DNSPythonResolver(config.dns)
        self.signer = signer or Signer(config.data_dir)
        self.directory = Directory(store)
        self.clock = clock
        relay = config.relay
        if mta_sts is None and relay.mta_sts:
            fetcher = HTTPSFetcher(
                self.resolver,
                port=relay.mta_sts_port,
                cafile=str(relay.ca_file) if relay.ca_file else None,
            )
            mta_sts = PolicyCache(self.resolver, fetcher, clock)
        self.mta_sts = mta_sts
        self.max_in_flight = max(1, self.qc.max_connections * 2)
        self.max_tasks = self.max_in_flight + RECORDING_MAX  # delivering + recording
        self._global = asyncio.Semaphore(max(1, self.qc.max_connections))
        self._hops: dict[str, _HopState] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._task_keys: dict[int, frozenset[str]] = {}  # entry id -> its destinations' keys
        self._task_rcpt_domains: dict[int, frozenset[str]] = {}  # entry id -> rcpt domains
        self._recording: dict[int, int] = {}  # entries past delivery -> bytes they hold
        self._recording_bytes = 0
        # Per scan in progress, the entries whose task ended since the scan began (_forget
        # adds to each): the scan's pages may predate that task's commit, so their copy of
        # such an entry is stale (a delivered entry would be delivered again).
        self._scans: list[set[int]] = []
        # The last scan may have left due entries behind (no room, destinations at their cap):
        # a task that ends then wakes the worker, so its slot is refilled at once rather than
        # at the next poll (which capped delivery at max_in_flight messages a second).
        self._more_due = False
        self._routes = {k.lower().rstrip("."): v for k, v in config.relay.routes.items()}
        self._wake = asyncio.Event()
        self._stopping = False
        self._main: asyncio.Task[None] | None = None
        self._unwatch: Callable[[], None] | None = None

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        # Mail accepted for remote recipients wakes the worker at once (Postfix: cleanup
        # notifies qmgr), instead of waiting up to POLL_SECONDS.
        self._unwatch = self.store.watch_queue(self.wake)
        self._main = asyncio.create_task(self._run(), name="postar-outbound")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking entries, give deliveries in flight `grace` seconds, cancel the rest
        (they stay queued and are retried at the next start)."""
        self._stopping = True
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        self._wake.set()
        if self._main is not None:
            self._main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._main
        tasks = list(self._tasks.values())
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for state in self._hops.values():
            for pooled in state.idle:
                pooled.client.abort()
            state.idle.clear()

    async def _run(self) -> None:
        while not self._stopping:
            # Cleared before the scan, not after: a wake-up during the scan (an enqueue it may
            # have missed, more dead backlog to defer) is kept and starts the next scan at once.
            self._wake.clear()
            try:
                await self.run_due()
            except Exception:
                # A store hiccup must not end outbound delivery; log and poll again.
                log.exception("queue poll failed")
            self._reap_idle()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_SECONDS):
                    await self._wake.wait()

    async def run_due(self) -> int:
        """Start tasks for due entries not already in flight, fairly across destinations;
        defer entries of dead destinations. Returns how many tasks were started."""
        delivering = len(self._tasks) - len(self._recording)
        room = min(self.max_in_flight - delivering, self.max_tasks - len(self._tasks))
        if self._recording_bytes >= RECORDING_BYTES:
            room = 0  # results are not being committed as fast as mail goes out: wait
        if room <= 0:
            self._more_due = True
            return 0
        now = self.clock()
        cap = max(1, 2 * self.qc.max_per_destination)
        busy: Counter[str] = Counter(
            k
            for entry_id, keys in self._task_keys.items()
            if entry_id not in self._recording
            for k in keys
        )
        # Domains of in-flight mail whose destination is at its cap; dead destinations are not
        # skipped: their entries must be seen to be deferred.
        skip = {
            d
            for d in self._task_domains()
            if busy[self.hop_for("@" + d).key] >= cap
            and not self._all_dead(frozenset([self.hop_for("@" + d).key]), now)
        }
        # Registered before the first page is read: an entry whose attempt ends after this
        # point may be in a page read from a snapshot taken before that attempt's result was
        # committed (the read runs in a store thread while tasks keep finishing).
        ended: set[int] = set()
        self._scans.append(ended)
        try:
            return await self._scan(now, room, cap, busy, skip, ended)
        finally:
            # By identity: two scans' sets may be equal (both empty), list.remove would take
            # the other scan's set away.
            self._scans = [e for e in self._scans if e is not ended]

    async def _scan(
        self,
        now: float,
        room: int,
        cap: int,
        busy: Counter[str],
        skip: set[str],
        ended: set[int],
    ) -> int:
        dead: list[QueueEntry] = []
        started = scanned = 0
        left_behind = bool(skip)  # the store leaves out the due mail of capped destinations
        after: tuple[float, int] | None = None
        # Entries in flight are left out by the store (they are due, and first in the order):
        # refilling one slot reads a few rows, not the in-flight ones again each time.
        in_flight = frozenset(self._tasks)
        limit = min(SCAN_PAGE, max(SCAN_FIRST_PAGE, room))
        while started < room and scanned < SCAN_LIMIT:
            page = await self.store.due_queue_entries(
                now, limit, after=after, skip_domains=skip, skip_ids=in_flight
            )
            for entry in page:
                if started >= room:
                    left_behind = True
                    break
                if entry.id in self._tasks or entry.id in ended:
                    # In flight, or its attempt ended after this page's snapshot may have
                    # been taken: the next scan reads it afresh.
                    continue
                keys = frozenset(self.hop_for(r.address).key for r in entry.recipients)
                if self._all_dead(keys, now) and self._may_defer_quietly(entry, now):
                    if len(dead) < DEAD_DEFER_BATCH:
                        dead.append(entry)
                    continue
                if keys and all(busy[k] >= cap for k in keys):
                    left_behind = True
                    continue  # its destination has enough in flight: room for the others
                task = asyncio.create_task(self._attempt_guarded(entry))
                self._tasks[entry.id] = task
                self._task_keys[entry.id] = keys
                self._task_rcpt_domains[entry.id] = frozenset(
                    r.address.rsplit("@", 1)[-1].lower() for r in entry.recipients
                )
                task.add_done_callback(functools.partial(self._forget, entry.id))
                busy.update(keys)
                started += 1
            scanned += len(page)
            if len(page) < limit:
                break
            after = (page[-1].next_attempt, page[-1].id)
            limit = min(SCAN_PAGE, limit * 2)
        else:
            left_behind = True  # stopped for room or SCAN_LIMIT with pages still full
        self._more_due = left_behind
        if dead:
            await self._defer_dead(dead, now)
            if len(dead) >= DEAD_DEFER_BATCH:
                self._wake.set()  # more of the backlog to move out of the way: poll again now
        return started

    def _all_dead(self, keys: frozenset[str], now: float) -> bool:
        states = [self._hops.get(k) for k in keys]
        return bool(states) and all(s is not None and s.dead_until > now for s in states)

    def _may_defer_quietly(self, entry: QueueEntry, now: float) -> bool:
        # A deferral that is due to expire or to warn goes the full way (it needs the DSN).
        if now - entry.created >= self.qc.give_up_seconds:
            return False
        warn_due = now - entry.created >= self.qc.delay_warning_seconds
        return not warn_due or "delay_warned" in entry.extra

    async def _defer_dead(self, entries: list[QueueEntry], now: float) -> None:
        async def defer(entry: QueueEntry) -> None:
            keys = self._task_keys.get(entry.id) or {
                self.hop_for(r.address).key for r in entry.recipients
            }
            states = [self._hops[k] for k in keys if k in self._hops]
            until = max((s.dead_until for s in states), default=now)
            error = "; ".join(dict.fromkeys(s.dead_error for s in states))
            with contextlib.suppress(NotFound):
                await self.store.update_queue_entry(
                    entry.id,
                    recipients=entry.recipients,
                    next_attempt=max(until, now + self._backoff(entry.attempts)),
                    attempts=entry.attempts + 1,
                    last_error=f"destination unreachable, delivery suspended: {error}"[:1000],
                )

        # Concurrent writes share the store's group commit; in slices to bound the tasks.
        for i in range(0, len(entries), 200):
            await asyncio.gather(*(defer(e) for e in entries[i : i + 200]))
        log.info("queue deferred for dead destinations", extra={"count": len(entries)})

    def _forget(self, entry_id: int, _task: asyncio.Task[None]) -> None:
        for ended in self._scans:
            ended.add(entry_id)
        if self._more_due:
            self._wake.set()
        self._tasks.pop(entry_id, None)
        self._recording_bytes -= self._recording.pop(entry_id, 0)
        self._task_keys.pop(entry_id, None)
        self._task_rcpt_domains.pop(entry_id, None)

    def _task_domains(self) -> set[str]:
        return {d for domains in self._task_rcpt_domains.values() for d in domains}

    async def drain(self) -> None:
        """Wait for every delivery in flight (tests, `queue flush` in-process)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def _attempt_guarded(self, entry: QueueEntry) -> None:
        try:
            await self.attempt(entry)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug in one delivery must not kill the worker; the entry stays queued and is
            # retried on the normal schedule.
            log.exception("queue delivery failed", extra={"id": entry.id})
            with contextlib.suppress(NotFound):
                await self.store.update_queue_entry(
                    entry.id,
                    recipients=entry.recipients,
                    next_attempt=self.clock() + self._backoff(entry.attempts),
                    attempts=entry.attempts + 1,
                    last_error="internal error",
                )

    def _backoff(self, attempts: int) -> float:
        return min(
            self.qc.retry_first_seconds * (2 ** min(attempts, 20)), self.qc.retry_max_seconds
        )

    # ---- one entry ----------------------------------------------------------------------------
    async def attempt(self, entry: QueueEntry) -> None:
        # Most mail is small: a read bounded to FIRST_READ is served on the loop's thread (the
        # store's inline path, a pread from the page cache), sparing a hop to its thread pool
        # per message; only a larger message needs the second read for the rest.
        raw = await self.store.read_blob(entry.blob_id, 0, FIRST_READ)
        if len(raw) == FIRST_READ:
            raw += await self.store.read_blob(entry.blob_id, FIRST_READ)
        outcomes: dict[str, Outcome] = {}
        if _count_received(raw) > self.config.smtp.max_received_headers:
            # RFC 5321 6.3: a message that has passed too many hops is looping.
            for r in entry.recipients:
                outcomes[r.address] = Outcome("failed", "5.4.6", "routing loop detected")
        else:
            groups: dict[Hop, list[QueuedRecipient]] = {}
            for r in entry.recipients:
                groups.setdefault(self.hop_for(r.address), []).append(r)
            signature = await self.signer.sign(raw, entry.sender)
            message = signature + raw
            results = await asyncio.gather(
                *(self._deliver_group(hop, entry, rcpts, message) for hop, rcpts in groups.items())
            )
            for result in results:
                outcomes.update(result)
        # Delivery is over: its slot may go to the next entry while the result is committed.
        # The entry stays in _tasks until then, so it cannot be started again meanwhile.
        if entry.id in self._tasks:
            self._recording[entry.id] = len(raw)
            self._recording_bytes += len(raw)
            if self._more_due:
                self._wake.set()
        await self._record(entry, raw, outcomes)

    def hop_for(self, address: str) -> Hop:
        domain = address.rsplit("@", 1)[1].lower() if "@" in address else ""
        relay = self.config.relay
        routes = self._routes
        if domain in routes:
            host, port = _host_port(routes[domain], relay.mx_port)
            return Hop(f"route:{host}:{port}", host=host, port=port)
        if relay.smarthost:
            host, port = _host_port(relay.smarthost, 587)
            return Hop("smarthost", host=host, port=port, smarthost=True)
        return Hop(f"mx:{domain}", domain=domain, port=relay.mx_port)

    def _hop_state(self, key: str) -> _HopState:
        state = self._hops.get(key)
        if state is None:
            state = _HopState(asyncio.Semaphore(max(1, self.qc.max_per_destination)))
            self._hops[key] = state
        return state

    async def _targets(self, hop: Hop) -> list[tuple[str, str]]:
        """(host name, address) pairs to try in order; raises DNSError."""
        if hop.host is not None:
            names = [hop.host]
        else:
            assert hop.domain is not None
            literal = address_literal(hop.domain)
            if literal:
                return [(hop.domain, literal)]
            names = [h.name for h in await mx_hosts(self.resolver, hop.domain)]
        out: list[tuple[str, str]] = []
        last: DNSError | None = None
        for name in names:
            try:
                ipaddress.ip_address(name)
                out.append((name, name))
                continue
            except ValueError:
                pass
            try:
                addresses = await self.resolver.addresses(name)
            except DNSError as exc:
                last = exc
                continue
            out.extend((name, a) for a in addresses)
        if not out:
            if last is not None:
                raise last
            # RFC 5321 5.1: no usable address for any MX (or the implicit MX).
            raise DNSError(
                f"no address for {', '.join(names)}",
                permanent=hop.domain is not None and names == [hop.domain],
                enhanced="5.4.4" if names == [hop.domain] else "4.4.4",
            )
        return out

    async def _deliver_group(
        self, hop: Hop, entry: QueueEntry, rcpts: list[QueuedRecipient], message: bytes
    ) -> dict[str, Outcome]:
        state = self._hop_state(hop.key)
        now = self.clock()
        if state.dead_until > now:
            return {r.address: Outcome("deferred", "4.4.1", state.dead_error) for r in rcpts}
        env = Envelope(
            sender=entry.sender,
            recipients=[r.address for r in rcpts],
            notify=[r.notify for r in rcpts],
            orcpt=[r.orcpt for r in rcpts],
            ret=entry.ret,
            envid=entry.envid,
        )
        policy = await self._sts_policy(hop)
        async with state.sem, self._global:
            if state.dead_until > self.clock():
                # It died while we waited for a connection slot: do not queue up behind it.
                return {r.address: Outcome("deferred", "4.4.1", state.dead_error) for r in rcpts}
            try:
                targets = await self._targets(hop)
            except DNSError as exc:
                kind = "failed" if exc.permanent else "deferred"
                return {r.address: Outcome(kind, exc.enhanced, str(exc)) for r in rcpts}
            targets = self._sts_filter(policy, hop, targets)
            sts = policy.mode if policy is not None else None
            errors: list[str] = []
            refused: list[str] = []
            for name, address in targets:
                try:
                    result, client, verified = await self._transaction(
                        hop, state, name, address, env, message, sts
                    )
                except _HopRefused as exc:
                    if sts != "enforce":
                        # A policy failure (require_tls, AUTH refused) is final for this attempt.
                        return {r.address: exc.outcome for r in rcpts}
                    # RFC 8461 4.2: this MX failed validation; the next one may pass.
                    refused.append(exc.outcome.text)
                    log.warning(
                        "mta-sts refused host", extra={"host": name, "error": exc.outcome.text}
                    )
                    continue
                except SMTPUncertainError as exc:
                    # The host may have the message: no next host and no fresh connection
                    # now (that would deliver it twice); retry later, like any deferral, which
                    # risks one duplicate instead of a loss (RFC 5321 6.1). The host answered
                    # until then, so it is not marked dead.
                    log.info("queue host failed", extra={"host": name, "error": str(exc)})
                    return {r.address: Outcome("deferred", "4.4.2", str(exc), name) for r in rcpts}
                except SMTPConnectionError as exc:
                    errors.append(str(exc))
                    log.info("queue host failed", extra={"host": name, "error": str(exc)})
                    continue
                self._release(state, client, verified)
                return self._map_result(result, rcpts, name)
            if refused or (sts == "enforce" and not targets):
                # RFC 8461 5.1: no MX passed the enforced policy; defer, never bounce, and keep
                # the hop alive (its hosts answered; a policy or certificate fix may come).
                text = (
                    "MTA-STS policy of "
                    + str(hop.domain)
                    + ": "
                    + ("; ".join((refused + errors)[-3:]) or "no MX host matches the policy")
                )
                return {r.address: Outcome("deferred", "4.7.5", text) for r in rcpts}
            error = "; ".join(errors[-3:]) or "no host to try"
            state.dead_until = self.clock() + DEAD_HOP_SECONDS
            state.dead_error = error
            return {r.address: Outcome("deferred", "4.4.1", error) for r in rcpts}

    async def _sts_policy(self, hop: Hop) -> Policy | None:
        # Routes and the smarthost are the admin's choice of next hop; RFC 8461 applies to
        # MX delivery (section 5.1), and address literals have no policy domain.
        if self.mta_sts is None or hop.domain is None or address_literal(hop.domain):
            return None
        return await self.mta_sts.policy(hop.domain)

    def _sts_filter(
        self, policy: Policy | None, hop: Hop, targets: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        if policy is None:
            return targets
        unlisted = sorted({name for name, _ in targets if not policy.matches(name)})
        if not unlisted:
            return targets
        if policy.mode == "testing":
            # RFC 8461 5.1: testing mode delivers anyway; the mismatch is only reported.
            log.warning(
                "mta-sts testing: mx not in policy",
                extra={"domain": hop.domain, "hosts": ",".join(unlisted)},
            )
            return targets
        # RFC 8461 4.1: an MX host the policy does not name is not a candidate at all.
        log.warning(
            "mta-sts mx not in policy", extra={"domain": hop.domain, "hosts": ",".join(unlisted)}
        )
        return [(n, a) for n, a in targets if policy.matches(n)]

    def _map_result(
        self, result: TransactionResult, rcpts: list[QueuedRecipient], host: str
    ) -> dict[str, Outcome]:
        out: dict[str, Outcome] = {}
        for r, reply in zip(rcpts, result.recipients, strict=True):
            if not reply.positive:
                out[r.address] = _reply_outcome(reply, host)
            elif result.data is None:
                out[r.address] = Outcome("deferred", "4.0.0", f"{host}: message not accepted")
            elif not result.data.positive:
                out[r.address] = _reply_outcome(result.data, host)
            else:
                out[r.address] = Outcome(
                    "delivered",
                    result.data.enhanced or "2.0.0",
                    str(result.data),
                    host,
                    relayed=not result.dsn_passed,
                )
        return out

    async def _transaction(
        self,
        hop: Hop,
        state: _HopState,
        name: str,
        address: str,
        env: Envelope,
        message: bytes,
        sts: str | None = None,
    ) -> tuple[TransactionResult, SMTPClient, bool]:
        # A pooled connection first; if it died while idle, a fresh one. Only if it died
        # before the end of the message: after the final dot the peer may have it.
        while state.idle:
            pooled = state.idle.pop()
            if sts == "enforce" and not pooled.verified:
                # Opened before the domain's policy applied: not good enough now.
                asyncio.get_running_loop().create_task(pooled.client.quit())
                continue
            try:
                return await pooled.client.send(env, message), pooled.client, pooled.verified
            except SMTPUncertainError:
                pooled.client.abort()
                raise
            except SMTPConnectionError:
                pooled.client.abort()
        client, verified = await self._open(hop, name, address, sts)
        try:
            return await client.send(env, message), client, verified
        except BaseException:
            client.abort()
            raise

    def _release(self, state: _HopState, client: SMTPClient, verified: bool = False) -> None:
        if (
            self._stopping
            or client.transactions >= self.qc.messages_per_connection
            or len(state.idle) >= self.qc.max_per_destination
        ):
            asyncio.get_running_loop().create_task(client.quit())
            return
        state.idle.append(_Pooled(client, self.clock(), verified))

    def _reap_idle(self) -> None:
        now = self.clock()
        for state in self._hops.values():
            keep = []
            for pooled in state.idle:
                if now - pooled.since > REUSE_IDLE:
                    asyncio.get_running_loop().create_task(pooled.client.quit())
                else:
                    keep.append(pooled)
            state.idle = keep

    async def _open(
        self, hop: Hop, name: str, address: str, sts: str | None = None
    ) -> tuple[SMTPClient, bool]:
        """A connection ready for MAIL, and whether its certificate was verified for `name`."""
        relay = self.config.relay
        policy_tls = (hop.smarthost and relay.require_tls) or sts == "enforce"
        if hop.smarthost and hop.port == 465:
            # RFC 8314 3.3: implicit TLS on the submissions port.
            raise _HopRefused(
                Outcome("deferred", "4.7.10", "implicit TLS smarthosts (465) are not supported")
            )
        if sts == "testing":
            # RFC 8461 5.1: find out whether the enforced policy would pass, deliver either way.
            try:
                return await self._connect(hop, name, address, True), True
            except _HopRefused as exc:
                log.warning(
                    "mta-sts testing: would defer",
                    extra={"domain": hop.domain, "host": name, "error": exc.outcome.text},
                )
        try:
            return await self._connect(hop, name, address, policy_tls), policy_tls
        except _TLSFallback:
            # RFC 7435: opportunistic TLS that fails is retried in the clear (Postfix does
            # the same), since the alternative is no delivery at all.
            return await self._connect(hop, name, address, False, try_tls=False), False

    async def _connect(
        self, hop: Hop, name: str, address: str, require_tls: bool, try_tls: bool = True
    ) -> SMTPClient:
        client = await SMTPClient.connect(address, hop.port, self.qc, name)
        try:
            return await self._session(client, hop, name, address, require_tls, try_tls)
        except BaseException:
            client.abort()
            raise

    async def _session(
        self,
        client: SMTPClient,
        hop: Hop,
        name: str,
        address: str,
        require_tls: bool,
        try_tls: bool = True,
    ) -> SMTPClient:
        relay = self.config.relay
        assert client.greeting is not None
        if client.greeting.code != 220:
            await client.quit()
            # RFC 5321 3.1: a 554 greeting refuses service; try the next host.
            raise SMTPConnectionError(f"{name} greeted with {client.greeting}")
        await client.ehlo(self.config.hostname)
        if try_tls and client.caps.has("STARTTLS"):
            context = self._verifying_context() if require_tls else unverified_tls_context()
            try:
                reply = await client.starttls(context, name if require_tls else None)
            except SMTPConnectionError as exc:
                if require_tls:
                    raise _HopRefused(
                        Outcome("deferred", "4.7.5", f"{name}: TLS required, {exc}")
                    ) from exc
                raise _TLSFallback() from exc
            if reply.code == 220:
                await client.ehlo(self.config.hostname)
            elif require_tls:
                raise _HopRefused(Outcome("deferred", "4.7.10", f"{name}: STARTTLS {reply}"))
        elif require_tls:
            await client.quit()
            raise _HopRefused(
                Outcome("deferred", "4.7.10", f"{name} offers no STARTTLS and TLS is required")
            )
        if hop.smarthost and relay.username:
            reply = await client.auth(relay.username, relay.password)
            if reply.code != 235:
                await client.quit()
                kind = "deferred"  # an account problem at the smarthost is fixable: retry
                raise _HopRefused(Outcome(kind, reply.enhanced or "4.7.0", f"{name}: AUTH {reply}"))
        return client

    def _verifying_context(self) -> ssl.SSLContext:
        ca = self.config.relay.ca_file
        return ssl.create_default_context(cafile=str(ca) if ca else None)

    # ---- results ------------------------------------------------------------------------------
    async def _record(self, entry: QueueEntry, raw: bytes, outcomes: dict[str, Outcome]) -> None:
        now = self.clock()
        expired = now - entry.created >= self.qc.give_up_seconds
        remaining: list[QueuedRecipient] = []
        failed: list[RecipientStatus] = []
        succeeded: list[RecipientStatus] = []
        delayed: list[RecipientStatus] = []
        errors: list[str] = []
        for r in entry.recipients:
            o = outcomes[r.address]
            log.info(
                "queue recipient",
                extra={"id": entry.id, "rcpt": r.address, "result": o.kind, "text": o.text},
            )
            if o.kind == "delivered":
                action = "relayed" if o.relayed else "delivered"
                succeeded.append(RecipientStatus(r, action, o.status, o.text, o.remote_mta))
            elif o.kind == "failed":
                failed.append(RecipientStatus(r, "failed", o.status, o.text, o.remote_mta))
            elif expired:
                # RFC 5321 4.5.4.1: give up; X.4.7 is "delivery time expired" (RFC 3463).
                failed.append(RecipientStatus(r, "failed", "5.4.7", o.text, o.remote_mta))
            else:
                remaining.append(r)
                errors.append(o.text)
                delayed.append(RecipientStatus(r, "delayed", o.status, o.text, o.remote_mta))

        extra = dict(entry.extra)
        warn = (
            delayed
            and "delay_warned" not in extra
            and now - entry.created >= self.qc.delay_warning_seconds
        )
        if warn:
            extra["delay_warned"] = str(int(now))
        # Write the queue first: a crash after this loses at most a DSN, never repeats a
        # delivery; a crash before it repeats the delivery (at most once), losing nothing.
        try:
            if remaining:
                await self.store.update_queue_entry(
                    entry.id,
                    recipients=remaining,
                    next_attempt=now + self._backoff(entry.attempts),
                    attempts=entry.attempts + 1,
                    last_error="; ".join(dict.fromkeys(errors))[:1000],
                    extra=extra,
                )
            else:
                await self.store.remove_queue_entry(entry.id)
        except NotFound:
            # `postar queue delete` removed it during the attempt: the admin wants no reports.
            log.info("queue entry deleted during delivery", extra={"id": entry.id})
            return
        for statuses, action in ((failed, "failed"), (succeeded, "delivered")):
            await self._notify(entry, raw, statuses, action, now)
        if warn:
            until = entry.created + self.qc.give_up_seconds
            await self._notify(entry, raw, delayed, "delayed", now, retry_until=until)

    async def _notify(
        self,
        entry: QueueEntry,
        raw: bytes,
        statuses: list[RecipientStatus],
        action: str,
        now: float,
        retry_until: float | None = None,
    ) -> None:
        if not entry.sender:
            return  # RFC 5321 6.1: never a notification about a notification
        wanted = [s for s in statuses if wants_notice(s.recipient, s.action)]
        if not wanted:
            return
        report = build_dsn(
            reporting_mta=self.config.hostname,
            entry=entry,
            statuses=wanted,
            original=raw,
            now=now,
            retry_until=retry_until,
        )
        await self.send_report(entry.sender, report)
        log.info("queue dsn sent", extra={"id": entry.id, "to": entry.sender, "action": action})

    async def send_report(self, to: str, report: bytes) -> None:
        """Deliver a DSN to a local mailbox, or queue it with the null sender."""
        resolved = await self.directory.resolve_recipient(to)
        if resolved is None:
            domain = to.rsplit("@", 1)[-1]
            if await self.directory.is_local_domain(domain):
                log.warning("queue dsn dropped: unknown local sender", extra={"to": to})
                return
            await self.store.enqueue("", [QueuedRecipient(to, ("NEVER",))], report)
            return
        if resolved.accounts:
            final = b"Return-Path: <>\r\n" + report
            targets = [DeliveryTarget(a.id) for a in resolved.accounts]
            try:
                await self.store.deliver(final, parse_message(final), targets)
            except QuotaExceeded:
                log.warning("queue dsn dropped: mailbox full", extra={"to": to})
        if resolved.remote:
            await self.store.enqueue(
                "", [QueuedRecipient(a, ("NEVER",)) for a in resolved.remote], report
            )


class _HopRefused(Exception):
    """A policy stops delivery through this hop (TLS required, AUTH refused)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.text)
        self.outcome = outcome


class _TLSFallback(Exception):
    """Opportunistic STARTTLS failed; reconnect without it."""
