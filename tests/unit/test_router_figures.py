"""router/figures.py: HAProxy's per-slot counters (`show stat`, the gRPC stick table) turned into
per-revision figures, and the agent's page the operator reads them back from."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from modelops_operator.metrics.router import parse_router_page
from modelops_operator.router.admin import parse_stat, parse_table
from modelops_operator.router.figures import CLASSES, Ledger, SlotCounters, slot_counters
from tests.support.decide_world import FAST

# The first columns of HAProxy 2.6's `show stat` header, as the admin socket sends it.
HEADER = (
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,"
    "wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,"
    "lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,"
    "hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other"
)
COLUMNS = HEADER.removeprefix("# ").split(",")


def row(backend: str, server: str, **values: int | str) -> str:
    """One `show stat` CSV row; unset columns are empty, as HAProxy leaves them."""
    cells = {"pxname": backend, "svname": server, **{k: str(v) for k, v in values.items()}}
    return ",".join(cells.get(column, "") for column in COLUMNS)


STAT = "\n".join(
    [
        HEADER,
        row("http", "FRONTEND", hrsp_2xx=999),
        row("http", "rev1", hrsp_2xx=90, hrsp_5xx=3, econ=2, eresp=1, status="UP"),
        row("http", "rev2", hrsp_2xx=10, hrsp_4xx=1, status="UP"),
        row("http", "BACKEND", hrsp_2xx=104),
        row("grpc", "rev1", hrsp_2xx=40),
        row("grpc", "rev2", hrsp_2xx=5, hrsp_other=1),
        row("metrics", "rev1", hrsp_2xx=7),
        "",
    ]
)
TABLE = (
    "# table: grpc, type: string, size:64, used:2\n"
    "0x55d0c1a0e2a0: key=rev2 use=0 exp=0 shard=0 gpc0=4 http_req_cnt=5\n"
    "0x55d0c1a0e3b0: key=rev1 use=0 exp=0 shard=0 gpc0=0 http_req_cnt=40\n"
)


def counters(two: int = 0, five: int = 0, econ: int = 0, grpc: int = 0) -> SlotCounters:
    responses = dict.fromkeys(CLASSES, 0) | {"2xx": two, "5xx": five}
    return SlotCounters(responses, connection_errors=econ, grpc_errors=grpc)


def test_slot_counters_from_haproxy_text() -> None:
    found = slot_counters(parse_stat(STAT), parse_table(TABLE))
    assert sorted(found) == [("grpc", "rev1"), ("grpc", "rev2"), ("http", "rev1"), ("http", "rev2")]
    http1 = found[("http", "rev1")]
    assert (http1.responses["2xx"], http1.responses["5xx"], http1.responses["other"]) == (90, 3, 0)
    assert (http1.connection_errors, http1.response_errors, http1.grpc_errors) == (2, 1, 0)
    assert found[("grpc", "rev2")].grpc_errors == 4  # failed inside an HTTP/2 200
    assert found[("grpc", "rev2")].responses["other"] == 1
    assert found[("grpc", "rev1")].grpc_errors == 0


def test_unreadable_cells_count_as_zero() -> None:
    text = "\n".join([HEADER, row("http", "rev1", hrsp_2xx="n/a", econ="")])
    assert slot_counters(parse_stat(text), {})[("http", "rev1")] == counters()


@pytest.mark.parametrize(
    ("now", "base", "delta"),
    [
        (counters(10, 1, 2, 3), counters(4, 1, 1, 1), counters(6, 0, 1, 2)),
        (counters(10), counters(10), counters()),
        (counters(3, 0, 1), counters(10, 0, 5), counters(3, 0, 1)),  # restarted: all of it
    ],
    ids=["since-base", "unchanged", "haproxy-restarted"],
)
def test_minus(now: SlotCounters, base: SlotCounters, delta: SlotCounters) -> None:
    assert now.minus(base) == delta


# --- the ledger ------------------------------------------------------------------------------
def test_first_reading_is_a_baseline() -> None:
    """Counters from before the agent knew the slot's revision belong to nobody."""
    ledger = Ledger()
    ledger.update({("http", "rev1"): 1}, {("http", "rev1"): counters(500)})
    assert ledger.totals == {}
    ledger.update({("http", "rev1"): 1}, {("http", "rev1"): counters(520, 1)})
    assert ledger.totals == {(1, "http"): counters(20, 1)}


def test_a_reassigned_slot_starts_the_new_revision_at_zero() -> None:
    ledger = Ledger()
    place = ("grpc", "rev3")
    ledger.update({place: 1}, {place: counters(0)})
    ledger.update({place: 2}, {place: counters(30, grpc=2)})  # read, then handed to revision 2
    ledger.update({place: 2}, {place: counters(35, grpc=3)})
    assert ledger.totals == {(1, "grpc"): counters(30, grpc=2), (2, "grpc"): counters(5, grpc=1)}


def test_a_parked_slot_stops_counting() -> None:
    ledger = Ledger()
    place = ("http", "rev1")
    ledger.update({place: 1}, {place: counters(0)})
    ledger.update({}, {place: counters(10)})
    ledger.update({}, {place: counters(99)})
    assert ledger.totals == {(1, "http"): counters(10)}


READINGS = st.lists(
    st.tuples(st.integers(1, 3), st.integers(0, 50), st.integers(0, 5), st.integers(0, 5)),
    min_size=1,
    max_size=12,
)


@FAST
@given(READINGS)
def test_every_response_after_the_baseline_is_counted_once(
    steps: list[tuple[int, int, int, int]],
) -> None:
    """Over growing counters each increment lands on exactly the revision that held the slot."""
    ledger, place = Ledger(), ("http", "rev1")
    total = counters()
    owner = steps[0][0]
    ledger.update({place: owner}, {place: total})
    expected: dict[int, int] = {}
    for revision, more_ok, more_5xx, more_econ in steps:
        total = counters(
            total.responses["2xx"] + more_ok,
            total.responses["5xx"] + more_5xx,
            total.connection_errors + more_econ,
        )
        expected[owner] = expected.get(owner, 0) + more_ok + more_5xx + more_econ
        ledger.update({place: revision}, {place: total})
        owner = revision
    seen = {
        rev: sum(t.responses.values()) + t.connection_errors
        for (rev, _), t in ledger.totals.items()
    }
    assert {r: n for r, n in seen.items() if n} == {r: n for r, n in expected.items() if n}


# --- the agent's page, read back by the operator ---------------------------------------------
class _Page(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self.metrics


def page(ledger: Ledger, weights: dict[int, int], version: int) -> str:
    """The agent's /metrics text."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Page(ledger.metrics(weights, version)))
    return generate_latest(registry).decode()


def test_the_operator_reads_the_agents_figures_per_revision() -> None:
    ledger = Ledger()
    found = slot_counters(parse_stat(STAT), parse_table(TABLE))
    owners = {("http", "rev1"): 1, ("http", "rev2"): 2, ("grpc", "rev1"): 1, ("grpc", "rev2"): 2}
    zero = {place: SlotCounters() for place in found}
    ledger.update(owners, zero)
    ledger.update(owners, found)
    sample = parse_router_page(page(ledger, {1: 90, 2: 10}, 7))
    assert sample.applied_version == 7
    assert sample.weights == {1: 90.0, 2: 10.0}
    # revision 1: 90 + 3 (http) + 40 (grpc) responses; 3 of them 5xx
    assert (sample.counts[1].requests, sample.counts[1].failures) == (133.0, 3.0)
    # revision 2: 10 + 1 (http) + 5 + 1 (grpc); a 4xx, an 'other' and 4 gRPC errors inside 200s
    assert (sample.counts[2].requests, sample.counts[2].failures) == (17.0, 6.0)


def test_page_lists_backend_errors_and_grpc_errors_per_revision() -> None:
    ledger = Ledger(totals={(1, "http"): counters(5, econ=2), (1, "grpc"): counters(1, grpc=1)})
    text = page(ledger, {1: 100}, 3)
    assert 'modelops_router_backend_errors_total{protocol="http",revision="1"} 2.0' in text
    assert 'modelops_router_grpc_errors_total{revision="1"} 1.0' in text
    assert 'modelops_router_grpc_errors_total{revision="1",' not in text
    assert "modelops_router_applied_version 3.0" in text
