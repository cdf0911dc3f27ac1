"""Durable intake vs a bare JSON endpoint, same client load, same run.

Both servers run as real uvicorn processes on loopback. ``recctl serve`` gets signed Agora
notifications (verify, parse, append to a real SQLite file with ``synchronous=FULL``, answer);
the bare Starlette endpoint only parses the JSON. Phase 1 is closed-loop (CONCURRENCY
connections, COUNT requests each server) for throughput and latency, in rounds that alternate
between the two servers; a server's throughput is its median round (this machine's speed
drifts by 2x within minutes, and a ratio should compare like with like). Phase 2 sends to
``recctl serve`` at a fixed rate, half of its phase-1 throughput, for the latency an operator
would see, counted from when each request was due. The client is ``loadgen.blast`` (plain
sockets, ~50 µs of CPU a request): the asyncio client it replaced cost ~200, more than the bare
endpoint, and on 2 cores it set the tail it meant to measure. Its timer is ``select()``'s,
precise to microseconds: on ``epoll_wait``'s whole milliseconds it sent paced requests up to
1.1 ms late, which counted as latency; the report gives how late it sent. The report also
counts the paced phase's commits whose fsync (timed by the writer) took over 10 ms, the
disk's share of the tail, and the watchdog's beats that the event loop ran late, the CPU's
share.

Targets: intake throughput >= 0.6x the bare endpoint; p99 <= 10 ms at half load.
Reproduce: ``make bench`` (writes ``bench-results/intake.json``). With ``BENCH_HOG=0.1/2``,
each server also runs at half its own throughput beside a CPU hog (:mod:`tests.bench.hog`):
contention on schedule, to compare versions of the code under the same noise.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.bench.hog import Hog
from tests.bench.loadgen import Blast, blast, raw_requests
from tests.bench.plots import plot_rounds
from tests.bench.traffic import Traffic
from tests.helpers import SECRET, signed
from tests.procs import ROOT, Server, clean_env, free_port

CONCURRENCY = 64
FULL_COUNT = 20_000
SMOKE_COUNT = 300
FULL_ROUNDS = 5  # closed-loop rounds per server, interleaved: bare, intake, bare, intake...
SMOKE_ROUNDS = 1
FULL_RATE_SECONDS = 10.0
SMOKE_RATE_SECONDS = 1.0
WARMUP = 500
TARGET_RATIO = 0.6
TARGET_P99_MS = 10.0
SMOKE_HOG = Hog(spin=0.05, period=0.5)
BEAT_SECONDS = 0.01  # the intake's watchdog beat: fine enough to see a spell of 10-100 ms
ASYNCIO_INTAKE = "intake (asyncio + h11)"

Requests = list[tuple[bytes, dict[str, str]]]


def bare_app() -> Starlette:
    """The baseline: read the body, parse the JSON, answer. (``uvicorn --factory`` target.)"""

    async def ingest(request: Request) -> Response:
        json.loads(await request.body())
        return JSONResponse({"ok": True})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    routes = [Route("/webhooks/agora", ingest, methods=["POST"]), Route("/healthz", healthz)]
    return Starlette(routes=routes)


@dataclass
class Phase:
    name: str
    requests: int
    seconds: float
    errors: int
    latencies_ms: list[float] = field(repr=False)
    rounds_rps: list[float] = field(default_factory=list)
    sent_late_ms: list[float] = field(default_factory=list, repr=False)  # paced phases

    @property
    def throughput(self) -> float:
        """The median round's, when there were rounds: one slow spell of this noisy machine
        must not decide the ratio."""
        if self.rounds_rps:
            return statistics.median(self.rounds_rps)
        return self.requests / self.seconds

    def percentile(self, p: float, of: list[float] | None = None) -> float:
        ordered = sorted(self.latencies_ms if of is None else of)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]

    def summary(self) -> dict[str, Any]:
        return {
            "phase": self.name,
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "throughput_rps": round(self.throughput, 1),
            "p50_ms": round(self.percentile(50), 3),
            "p99_ms": round(self.percentile(99), 3),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 3),
            "rounds_rps": [round(r, 1) for r in self.rounds_rps],
            # The client's own share of the latency: how late it sent (it counts from due).
            "client_sent_late_p99_ms": (
                round(self.percentile(99, self.sent_late_ms), 3) if self.sent_late_ms else None
            ),
        }


CHANNELS = 1000
# Another tool's recordings, in channels no room of this service wants (an app's NCS reports
# every channel it has): the reconciler runs, and finds nothing of its own to do.
_TRAFFIC = Traffic(CHANNELS, seed=11, ours=False).notices()


def make_requests(prefix: str, count: int) -> Requests:
    """Signed NCS notifications as a busy deployment gets them (:mod:`tests.bench.traffic`):
    1,000 interleaved channels, the documented mix of event types and sizes, redundant
    deliveries and retries (answered as duplicates). ``prefix`` names the batch only."""
    out: Requests = []
    for _ in range(count):
        body, _kind = next(_TRAFFIC)
        out.append((body, signed(body)))
    return out


def send(server: Server, requests: Requests, rate: float | None = None) -> Blast:
    """Closed loop (``rate=None``: CONCURRENCY connections, each sending its next request as
    soon as the last is answered) or open loop at ``rate`` per second."""
    raw = raw_requests(server.url, "/webhooks/agora", requests)
    return blast(server.url, raw, CONCURRENCY, rate)


def phase(name: str, run: Blast) -> Phase:
    """An open-loop run as a phase (with how late the client sent)."""
    return Phase(
        name,
        len(run.latencies_ms),
        run.seconds,
        run.errors,
        run.latencies_ms,
        sent_late_ms=run.sent_late_ms,
    )


def interleaved(servers: dict[str, Server], count: int, rounds: int) -> dict[str, Phase]:
    """``rounds`` closed-loop rounds of ``count / rounds`` requests on each server in turn, so
    both see the same spells of a noisy machine; one phase per server, its rounds merged."""
    runs: dict[str, list[Blast]] = {name: [] for name in servers}
    for i in range(rounds):
        for name, server in servers.items():
            runs[name].append(send(server, make_requests(f"{name}-{i}", count // rounds)))
    phases = {}
    for name, blasts in runs.items():
        phases[name] = Phase(
            name,
            sum(len(b.latencies_ms) for b in blasts),
            sum(b.seconds for b in blasts),
            sum(b.errors for b in blasts),
            [ms for b in blasts for ms in b.latencies_ms],
            [len(b.latencies_ms) / b.seconds for b in blasts],
        )
    return phases


def histogram(server: Server, name: str) -> dict[float, float]:
    """One of the server's Prometheus histograms: cumulative count per upper bound."""
    text = httpx.get(f"{server.url}/metrics").text
    buckets = re.findall(rf'^{name}_bucket\{{le="([^"]+)"\}} (\S+)$', text, re.M)
    return {float(le): float(count) for le, count in buckets}


def over(before: dict[float, float], after: dict[float, float], bound: float) -> int:
    """How many observations between the two readings were above ``bound`` (a bucket's)."""
    inf = float("inf")
    return int((after[inf] - before.get(inf, 0.0)) - (after[bound] - before.get(bound, 0.0)))


def tail_shares(
    before: dict[str, dict[float, float]], after: dict[str, dict[float, float]]
) -> dict[str, Any]:
    """What the machine did to one phase's tail, from the intake's own metrics.

    The disk's share: commits by how long their fsync took (a durable answer cannot come
    sooner). The CPU's share: the watchdog's beats (every BEAT_SECONDS) that the event loop ran
    late, i.e. how often it had more to do than it could. This VM's CPU runs a third to a
    half slower for spells of up to a second, and a busy loop falls behind in them.
    """
    sync, lag = "store_sync_seconds", "event_loop_lag_seconds"
    inf = float("inf")
    return {
        "commits": int(after[sync][inf] - before[sync].get(inf, 0.0)),
        "fsync_over_10ms": over(before[sync], after[sync], 0.01),
        "fsync_over_100ms": over(before[sync], after[sync], 0.1),
        "fsync_over_1s": over(before[sync], after[sync], 1.0),
        "loop_beats": int(after[lag][inf] - before[lag].get(inf, 0.0)),
        "loop_late_over_5ms": over(before[lag], after[lag], 0.005),
        "loop_late_over_10ms": over(before[lag], after[lag], 0.01),
    }


def shares(server: Server) -> dict[str, dict[float, float]]:
    return {
        name: histogram(server, name) for name in ("store_sync_seconds", "event_loop_lag_seconds")
    }


def under(hog: Hog, server: Server, rate: float, seconds: float, name: str) -> Phase:
    """A paced phase with the hog running: how much of the machine the tail can do without."""
    requests = make_requests(f"hog-{name}", max(1, int(rate * seconds)))
    with hog.running():
        return phase(f"{name} at {rate:.0f}/s + hog", send(server, requests, rate))


async def test_durable_intake_against_a_bare_endpoint(full_bench: bool, tmp_path: Path) -> None:
    count = FULL_COUNT if full_bench else SMOKE_COUNT
    hog = Hog.parse(os.environ["BENCH_HOG"]) if os.environ.get("BENCH_HOG") else None
    if hog is None and not full_bench:
        hog = SMOKE_HOG  # the smoke run keeps the hog's phases working
    env = clean_env(
        DATABASE_URL=f"sqlite:///{tmp_path}/bench.db",
        AGORA_NCS_SECRET=SECRET,
        LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "INFO"),
        LOOP_BEAT_SECONDS=str(BEAT_SECONDS),
        # Nothing listens here: whatever a pass might call, no call leaves the machine.
        AGORA_API_BASE_URL=f"http://127.0.0.1:{free_port()}",
    )
    bare_port = free_port()
    bare_cmd = [sys.executable, "-m", "uvicorn", "--factory", "tests.bench.bench_intake:bare_app"]
    bare_cmd += ["--port", str(bare_port), "--log-level", env["LOG_LEVEL"].lower()]
    bare_cmd += ["--no-access-log"]  # as ``recctl serve`` by default (``ACCESS_LOG``)
    bare_cmd += ["--loop", "uvloop", "--http", "httptools"]  # the best stack there is
    bare = Server.start(bare_cmd, bare_port, env, tmp_path / "bare.log")
    intake_server = Server.recctl_serve({**env, "SERVER_STACK": "uvloop"}, tmp_path / "intake.log")
    asyncio_env = {**env, "SERVER_STACK": "asyncio", "DATABASE_URL": f"sqlite:///{tmp_path}/h11.db"}
    asyncio_server = Server.recctl_serve(asyncio_env, tmp_path / "intake-h11.log")
    try:
        servers = {
            "bare JSON endpoint": bare,
            "durable intake": intake_server,
            ASYNCIO_INTAKE: asyncio_server,
        }
        for name, server in servers.items():
            await server.wait_healthy()
            send(server, make_requests(f"warm-{name}", WARMUP))
        rounds = FULL_ROUNDS if full_bench else SMOKE_ROUNDS
        phases = interleaved(servers, count, rounds)
        baseline, intake = phases["bare JSON endpoint"], phases["durable intake"]
        on_asyncio = phases[ASYNCIO_INTAKE]
        asyncio_server.stop()
        rate = intake.throughput / 2
        seconds = FULL_RATE_SECONDS if full_bench else SMOKE_RATE_SECONDS
        paced_requests = make_requests("paced", max(1, int(rate * seconds)))
        # The control: the bare endpoint at the same rate, just before. When the machine
        # stalls (this VM's disk and CPU do, now and then), its tail shows it too.
        control = phase(f"bare at {rate:.0f}/s", send(bare, paced_requests, rate))
        hogged = []  # each server at half its own throughput, beside a hog (BENCH_HOG)
        if hog:
            hogged.append(under(hog, bare, baseline.throughput / 2, seconds, "bare"))
        bare.stop()
        before = shares(intake_server)
        paced = phase(f"intake at {rate:.0f}/s", send(intake_server, paced_requests, rate))
        machine = tail_shares(before, shares(intake_server))
        if hog:
            hogged.append(under(hog, intake_server, rate, seconds, "intake"))
    finally:
        bare.stop()
        intake_server.stop()
        asyncio_server.stop()

    ratio = intake.throughput / baseline.throughput
    report = {
        "mode": "full" if full_bench else "smoke",
        "concurrency": CONCURRENCY,
        "cpus": os.cpu_count(),
        "log_level": env["LOG_LEVEL"],
        "phases": [
            p.summary() for p in (baseline, intake, on_asyncio, control, paced, *hogged)
        ],
        "server_stack": "uvloop + httptools (the bare endpoint and the durable intake)",
        "traffic": f"NCS mix over {CHANNELS} channels, redundant deliveries and retries",
        "stack_gain": round(intake.throughput / on_asyncio.throughput, 3),
        "hog": hog.describe() if hog else None,
        "throughput_ratio": round(ratio, 3),
        "paced_phase_machine": machine,
        "targets": {"ratio": TARGET_RATIO, "p99_ms_at_half_load": TARGET_P99_MS},
        "meets_targets": ratio >= TARGET_RATIO and paced.percentile(99) <= TARGET_P99_MS,
    }
    print_table(report)
    out = ROOT / "bench-results" if full_bench else tmp_path
    out.mkdir(exist_ok=True)
    (out / "intake.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_rounds(
        out / "intake.png",
        f"Intake against a bare endpoint (ratio {ratio:.2f}, target {TARGET_RATIO:g})",
        [baseline, intake, on_asyncio],
    )
    assert (out / "intake.png").stat().st_size > 0

    assert baseline.errors == intake.errors == on_asyncio.errors == paced.errors == 0
    assert all(p.errors == 0 for p in hogged)
    if full_bench:
        assert ratio >= TARGET_RATIO, report
        assert paced.percentile(99) <= TARGET_P99_MS, report


def print_table(report: dict[str, Any]) -> None:
    columns = ("phase", "requests", "throughput_rps", "p50_ms", "p99_ms", "mean_ms")
    print()
    print("  ".join(f"{c:>22}" if i == 0 else f"{c:>14}" for i, c in enumerate(columns)))
    for phase in report["phases"]:
        cells = [str(phase[c]) for c in columns]
        print("  ".join(f"{v:>22}" if i == 0 else f"{v:>14}" for i, v in enumerate(cells)))
    verdict = "meets" if report["meets_targets"] else "MISSES"
    print(
        f"throughput ratio intake/bare = {report['throughput_ratio']} "
        f"(target >= {TARGET_RATIO}); {verdict} targets [{report['mode']}]"
    )
    m = report["paced_phase_machine"]
    print(
        f"paced phase: {m['commits']} commits; fsync > 10 ms: {m['fsync_over_10ms']}, "
        f"> 100 ms: {m['fsync_over_100ms']}, > 1 s: {m['fsync_over_1s']}; event loop late "
        f"> 5 ms at {m['loop_late_over_5ms']} of {m['loop_beats']} beats, "
        f"> 10 ms at {m['loop_late_over_10ms']}"
    )
    if report["hog"]:
        print(f"+ hog: {report['hog']}, in the bench's session (BENCH_HOG); no target")
    late = [(p["phase"], p["client_sent_late_p99_ms"]) for p in report["phases"]]
    print("client sent late, p99: " + ", ".join(f"{n} {ms} ms" for n, ms in late if ms is not None))
