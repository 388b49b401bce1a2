"""Smoke test of the benchmark harness's pure parts: statistics, the side-by-side table, the
result files, the workload plans and the generated server configurations. No server runs."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:  # bench/ lives at the repository root, beside src/
    sys.path.insert(0, str(REPO))

from bench import report, stats, workloads  # noqa: E402
from bench.load import outbound  # noqa: E402
from bench.targets import dovecot, postar, postfix  # noqa: E402


def test_summary_median_and_spread() -> None:
    s = stats.Summary.of([10.0, 12.0, 8.0])
    assert s is not None
    assert (s.median, s.low, s.high, s.rounds) == (10.0, 8.0, 12.0, 3)
    assert s.spread == pytest.approx(0.4)
    assert stats.Summary.of([]) is None
    assert stats.Summary.of([5.0]).spread == 0.0  # type: ignore[union-attr]


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert stats.percentile(values, 50) == 50.0
    assert stats.percentile(values, 99) == 99.0
    assert stats.percentile(values, 100) == 100.0
    assert stats.percentile([7.0], 99) == 7.0


def _m(target: str, values: list[float], metric: str = "rate", higher: bool = True):
    m = stats.Measurement("smtp", metric, "msg/s", higher, target)
    m.values.extend(values)
    return m


def test_rows_pair_postar_with_the_reference_and_give_the_ratio() -> None:
    ms = [
        _m("postar", [90.0, 100.0, 110.0]),
        _m("postfix", [200.0, 200.0]),
        _m("postar", [4.0], metric="latency", higher=False),
        _m("dovecot", [8.0], metric="latency", higher=False),
        _m("smtp-sink", [1000.0], metric="ceiling"),
    ]
    ms[1].notes.append("2/3 delivered")
    rows = stats.build_rows(ms)
    assert [r.metric for r in rows] == ["rate", "latency", "ceiling"]
    assert rows[0].reference_name == "postfix"
    assert rows[0].ratio == pytest.approx(0.5)
    assert rows[0].notes == ["postfix: 2/3 delivered"]
    assert rows[1].ratio == pytest.approx(0.5)
    assert rows[2].postar is None and rows[2].ratio is None
    table = stats.markdown_table(rows)
    lines = table.splitlines()
    assert len(lines) == 2 + 3
    assert "| worse |" in lines[2]  # half the rate of Postfix
    assert "| better |" in lines[3]  # half the latency of Dovecot
    assert "100 ±10%" in lines[2]


def test_result_files(tmp_path: Path) -> None:
    rows = stats.build_rows([_m("postar", [1.0, 2.0]), _m("postfix", [2.0, 2.0])])
    name = report.stem("2026-01-02-0304", "abc1234", "quick", ("smtp",))
    assert name == "2026-01-02-0304-abc1234-quick-only-smtp"
    md = report.markdown(rows, "test machine", {"started": "now", "plan": "quick"}, ["n1"], [])
    j, m = report.write(tmp_path, name, {"rows": rows, "path": tmp_path}, md, latest=False)
    data = json.loads(j.read_text())
    assert data["rows"][0]["ratio"] == pytest.approx(0.75)
    assert "test machine" in m.read_text()
    assert not (tmp_path / "LATEST.md").exists()
    report.write(tmp_path, report.stem("2026-01-02-0304", "abc1234", "full"), {}, md)
    assert "Copied from 2026-01-02-0304-abc1234.md" in (tmp_path / "LATEST.md").read_text()


def test_plans_are_bounded_and_quick_is_smaller() -> None:
    full, quick = workloads.FULL, workloads.QUICK
    assert set(workloads.REFERENCE) == set(workloads.WORKLOADS)
    assert quick.imap_seconds < full.imap_seconds
    assert max(quick.memory_steps) < max(full.memory_steps)
    assert quick.large_messages < full.large_messages
    assert full.large_messages == 100_000 and max(full.memory_steps) == 10_000
    assert full.pop3_messages == 2000
    for plan in (full, quick):
        assert plan.smtp_deadline > 0 and plan.large_load_deadline > 0
        assert {(c.sessions, c.size) for c in plan.smtp_cases} == {
            (1, 4096),
            (20, 4096),
            (1, 102400),
            (20, 102400),
        }
    # Issue 5's bounds: the full run within 20 minutes, --quick within 3, with room left for
    # installs, the corpus and server starts beside the workloads' own budgets.
    assert set(full.budget) == set(quick.budget) == set(workloads.WORKLOADS)
    assert sum(full.budget.values()) <= 18 * 60
    assert sum(quick.budget.values()) <= 150
    assert workloads.parse_list("pop3, smtp", workloads.WORKLOADS, "w") == ("smtp", "pop3")
    with pytest.raises(ValueError, match="unknown"):
        workloads.parse_list("smtp,nntp", workloads.WORKLOADS, "w")


def test_generated_configs(tmp_path: Path) -> None:
    conf = dovecot.config_text(tmp_path, 1143, 1110, 1124, 10_000, 1, "SCRAM-SHA-256")
    assert f"base_dir = {tmp_path}/run" in conf
    assert "port = 1143" in conf and "port = 1110" in conf
    assert "mail_max_userip_connections = 10100" in conf
    assert "scram-sha-256" in conf
    main_cf = postfix.bench_main_cf(tmp_path)
    assert f"queue_directory = {tmp_path}/spool" in main_cf
    assert "virtual_mailbox_domains = bench.test" in main_cf
    assert "inet_interfaces = 127.0.0.1" in main_cf
    text = postar.config_text(tmp_path / "data", {"smtp": 2525, "imap": 1143}, 10_000)
    raw = tomllib.loads(text)
    assert raw["hostname"] == "bench.test"
    assert raw["listen"] == {"smtp": "127.0.0.1:2525", "imap": "127.0.0.1:1143"}
    config = pytest.importorskip("postar.config")
    # The server's own loader must accept what the bench writes (the [limits] keys included).
    parsed = config.config_from_dict(raw, base_dir=tmp_path)
    assert parsed.limits.connections_per_ip >= 10_000


def test_corpus_files_become_wire_messages() -> None:
    from bench import corpus

    raw = b"From someone@example.org  Thu Aug 22 12:36:23 2002\nSubject: x\n\nline\rtwo\r\n"
    assert corpus.to_wire(raw) == b"Subject: x\r\n\r\nline\r\ntwo\r\n"
    assert (
        corpus.to_wire(b"Subject: y\n\nno final newline")
        == b"Subject: y\r\n\r\nno final newline\r\n"
    )


def test_outbound_plan_configs_and_sink_counter(tmp_path: Path) -> None:
    full, quick = workloads.FULL, workloads.QUICK
    assert workloads.REFERENCE["outbound"] == "postfix"
    assert quick.outbound_messages < full.outbound_messages
    assert full.outbound_connections == quick.outbound_connections == 20
    # Both servers route the remote domain to the sink's port with 20 connections.
    cf = postfix.outbound_main_cf(outbound.DOMAIN, 2600, 20)
    assert "transport_maps = inline:{sink.test=smtp:[127.0.0.1]:2600}" in cf
    assert "initial_destination_concurrency = 20" in cf
    text = postar.config_text(
        tmp_path / "data", {"smtp": 2525}, 100, postar.outbound_config(outbound.DOMAIN, 2600, 20)
    )
    config = pytest.importorskip("postar.config")
    parsed = config.config_from_dict(tomllib.loads(text), base_dir=tmp_path)
    assert parsed.relay.routes == {"sink.test": "127.0.0.1:2600"}
    assert parsed.queue.max_per_destination == 20 and parsed.queue.max_connections == 20
    assert "127.0.0.0/8" in parsed.smtp.trusted_networks
    # smtp-sink -c rewrites one counter line with CR: the last "mesg=" is the count.
    sink = outbound.Sink(2600, tmp_path, "count")
    assert sink.count() == 0
    sink.out.write_bytes(b"".join(b"sess=1 quit=0 mesg=%d\r" % i for i in range(1, 1001)))
    assert sink.count() == 1000
