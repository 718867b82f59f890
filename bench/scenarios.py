"""The six measurements. Each starts what it needs, drives it, and returns plain numbers for the report.

Every service here is the real one (``gunicorn app:app``) against the fakes in their own process, signed webhooks
as Meta sends them, and the per-customer rate limit raised out of the way (the 500-turn conversation would trip
it; the store's count behind it still runs for every message).
"""

from __future__ import annotations

import dataclasses
import http.client
import math
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from whatsapp.config import OpenAISettings
from whatsapp.testing import webhooks
from whatsapp.testing.service import ACCESS_TOKEN, APP_SECRET, base_environment

from .fakes import Fakes
from .load import OpenLoop, Shot, Summary, percentile
from .server import Gunicorn, Memory

WEBHOOK_PATH = "/whatsapp/webhook"
CEILING_P99 = 0.100  # seconds: the intake ceiling is the highest rate answered with p99 under this, and no error
GENERATOR_LAG = 0.050  # seconds at p99: a generator this late is measuring itself, not the server


@dataclass(frozen=True)
class Plan:
    """What to run; ``QUICK`` proves every measurement works in a few seconds, ``FULL`` is the real thing."""

    workers: int = 2
    threads: int = 8
    worker_threads: int | None = None  # AK_WORKER__THREADS; None keeps the service's default (8 per process)
    history_tokens: int | None = None  # AK_OPENAI__HISTORY_TOKENS; None keeps the service's default (8000)
    load_rate: float = 100.0
    load_seconds: float = 10.0
    customers: int = 500
    model_delay: float = 2.0
    probe_rate: float = 100.0  # first requests after a start, a new connection each
    probe_seconds: float = 5.0
    inflight_rate: float = 250.0  # x model_delay = conversations in flight
    inflight_seconds: float = 10.0
    drain_timeout: float = 400.0
    ladder: tuple[float, ...] = (50, 100, 200, 300, 400, 600, 800, 1200, 1600, 2400, 3200, 4800)
    step_seconds: float = 5.0
    warmup_seconds: float = 1.0
    refine: int = 2
    pipeline_messages: int = 200
    pipeline_rate: float = 20.0
    outbound_sends: int = 2000
    outbound_threads: int = 8
    turns: int = 500
    checkpoints: tuple[int, ...] = (1, 50, 500)
    fresh: bool = True  # a new service (and store) for each measurement and each ceiling step


FULL = Plan()
QUICK = Plan(
    load_rate=50,
    load_seconds=1,
    customers=50,
    model_delay=0.2,
    drain_timeout=30,
    ladder=(50, 100),
    step_seconds=0.5,
    warmup_seconds=0.2,
    refine=0,
    pipeline_messages=20,
    probe_rate=50,
    probe_seconds=1,
    inflight_rate=100,
    inflight_seconds=1,
    outbound_sends=200,
    turns=20,
    checkpoints=(1, 10, 20),
    fresh=False,
)


# results --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AckResult:
    summary: Summary
    expected: int
    answered_once: int
    missing: int
    duplicates: int  # messages answered more than once
    strays: int  # texts sent in reply to nothing we sent
    failed_sends: int
    drain_seconds: float  # from the last webhook's 200 to the last answer at Graph
    answer_p50: float  # webhook scheduled -> its answer at Graph
    answer_p99: float
    answer_max: float
    memory: list[Memory]
    in_flight_peak: int = 0  # most conversations between webhook and answer at once
    bare: Summary | None = None  # bare Flask under the same gunicorn, same webhooks, same schedule


@dataclass(frozen=True)
class ProbeResult:
    """The first requests after a start, a new connection each: ours and bare Flask."""

    ours: Summary
    bare: Summary
    ours_first: float  # the slowest request scheduled in the first 0.3 s
    bare_first: float
    ours_ready_seconds: float  # launch -> first HTTP answer
    bare_ready_seconds: float


@dataclass(frozen=True)
class CeilingResult:
    ours: Climb
    bare: Climb

    @property
    def ratio(self) -> float:
        return self.ours.ceiling / self.bare.ceiling if self.bare.ceiling else math.nan


@dataclass(frozen=True)
class PipelineResult:
    count: int
    errors: int
    total: list[float]  # webhook sent -> the reply's arrival at Graph, sorted
    to_typing: list[float]  # webhook sent -> the mark-read/typing call at Graph
    to_model: list[float]  # webhook sent -> the chat request at the model
    model_to_reply: list[float]  # chat request at the model -> the reply at Graph
    ack: list[float]


@dataclass(frozen=True)
class OutboundResult:
    sends: int
    threads: int
    seconds: float
    delivered: int
    connections: int | None
    latencies: list[float] = field(repr=False)

    @property
    def per_second(self) -> float:
        return self.sends / self.seconds


@dataclass(frozen=True)
class Turn:
    number: int
    request_bytes: int
    messages: int  # in the chat request, system prompt included
    seconds: float  # webhook sent -> the reply at Graph


@dataclass(frozen=True)
class TurnsResult:
    turns: list[Turn]
    checkpoints: tuple[int, ...]
    history_tokens: int

    def at(self, number: int) -> Turn:
        return self.turns[number - 1]

    def seconds_around(self, number: int, half_window: int = 5) -> float:
        """Median turn time of the turns within ``half_window`` of ``number`` (turn 1 alone: it is special)."""
        if number == 1:
            return self.turns[0].seconds
        low, high = max(2, number - half_window), min(len(self.turns), number + half_window)
        return percentile(sorted(t.seconds for t in self.turns[low - 1 : high]), 50)

    def plateau(self) -> tuple[int, int] | None:
        """Smallest and largest request (bytes) from the turn the budget was reached to the last turn."""
        start = self.budget_reached_at
        if start is None:
            return None
        sizes = [t.request_bytes for t in self.turns[start - 1 :]]
        return min(sizes), max(sizes)

    @property
    def budget_reached_at(self) -> int | None:
        """The first turn whose request holds no more messages than the one before: trimming has begun."""
        for previous, turn in zip(self.turns, self.turns[1:], strict=False):
            if turn.messages <= previous.messages:
                return turn.number
        return None


# the bench's world: fakes, a working folder, services ----------------------------------------------------------


class Bench:
    """The fakes, a working folder and the services under test, for one run of the plan."""

    def __init__(self, plan: Plan, workdir: Path, *, profile_dir: Path | None = None, log: Callable = print) -> None:
        self.plan = plan
        self.workdir = workdir
        self.profile_dir = profile_dir
        self.log = log
        self.fakes = Fakes()
        self._shared: Gunicorn | None = None
        self._started: list[Gunicorn] = []

    def close(self) -> None:
        for service in self._started:
            service.stop()
        self.fakes.close()

    def environment(self, name: str) -> dict[str, str]:
        env = base_environment(self.fakes.graph_url, self.fakes.model_url + "/v1", self.workdir / f"{name}.db")
        env["AK_WHATSAPP__RATE_LIMIT_PER_MINUTE"] = "1000000"
        if self.plan.worker_threads:
            env["AK_WORKER__THREADS"] = str(self.plan.worker_threads)
        if self.plan.history_tokens:
            env["AK_OPENAI__HISTORY_TOKENS"] = str(self.plan.history_tokens)
        return env

    @contextmanager
    def ours(self, name: str) -> Iterator[Gunicorn]:
        """Our service: a fresh one (own store) per use, or in quick mode one shared by every measurement."""
        if not self.plan.fresh and self._shared is not None:
            with self._profiled(self._shared, name):
                yield self._shared
            return
        service = self._start("app:app", self.environment(name if self.plan.fresh else "shared"), "ours")
        try:
            with self._profiled(service, name):
                yield service
        finally:
            if self.plan.fresh:
                service.stop()
                self._started.remove(service)
            else:
                self._shared = service

    @contextmanager
    def bare(self) -> Iterator[Gunicorn]:
        service = self._start("bench.bare_app:app", self.environment("bare"), "bare")
        try:
            yield service
        finally:
            service.stop()
            self._started.remove(service)

    def _start(self, app: str, env: dict[str, str], name: str) -> Gunicorn:
        for attempt in (1, 2):
            service = Gunicorn(app, env, self.workdir, workers=self.plan.workers, threads=self.plan.threads, name=name)
            try:
                service.start()
            except RuntimeError as error:
                if attempt == 2:
                    raise
                self.log(f"  gunicorn did not start, trying once more on another port: {str(error)[-2000:]}")
                continue
            self._started.append(service)
            return service
        raise AssertionError("unreachable")

    @contextmanager
    def _profiled(self, service: Gunicorn, name: str) -> Iterator[None]:
        """With ``--py-spy DIR``: sample the master and its workers while the measurement runs."""
        if self.profile_dir is None or shutil.which("py-spy") is None:
            yield
            return
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        output = self.profile_dir / f"{name}.txt"
        command = ["py-spy", "record", "--pid", str(service.pid), "--subprocesses", "--rate", "200", "--gil"]
        command += ["--format", "raw", "--output", str(output), "--nonblocking"]
        spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # let it attach
        try:
            yield
        finally:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()


# webhooks as Meta sends them ------------------------------------------------------------------------------------


def customer(number: int) -> str:
    return f"4477009{number:05d}"


def text_shot(text: str, sender: str) -> Shot:
    """A signed webhook carrying one text message; the shot's tag is the message id."""
    message = webhooks.text_message(text, sender=sender)
    body = webhooks.dumps(webhooks.webhook(message))
    headers = (("Content-Type", "application/json"), ("X-Hub-Signature-256", webhooks.sign(body, APP_SECRET)))
    return Shot(WEBHOOK_PATH, body, headers, tag=message["id"])


def customer_shots(count: int, customers: int, offset: int = 0) -> list[Shot]:
    return [
        text_shot(f"Hello, is my order {offset + n} on its way? It was due yesterday.", customer(n % customers))
        for n in range(count)
    ]


def _wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def _idle(service: Gunicorn) -> bool:
    counts = service.health()["store"]["messages"]
    return counts["received"] + counts["claimed"] + counts["answered"] == 0


# 1, 6 and 7: acks and answers under load, every message answered once; memory after it ---------------------------


def ack_latency(bench: Bench) -> AckResult:
    """100/s for 10 s from 500 customers with a 2 s model: acks, answers, memory; bare Flask on the same load."""
    plan = bench.plan
    result = load_run(bench, "ack", plan.load_rate, plan.load_seconds)
    shots = customer_shots(int(plan.load_rate * plan.load_seconds), plan.customers)
    with bench.bare() as service:
        bare = Summary.of(plan.load_rate, OpenLoop(service.url).run(shots, plan.load_rate))
    return dataclasses.replace(result, bare=bare)


def in_flight(bench: Bench) -> AckResult:
    """Many conversations in flight at once: ``inflight_rate`` x the model's time (250/s x 2 s = 500)."""
    plan = bench.plan
    return load_run(bench, "inflight", plan.inflight_rate, plan.inflight_seconds, offset=2 * 10**6)


def load_run(bench: Bench, name: str, rate: float, seconds: float, offset: int = 0) -> AckResult:
    plan = bench.plan
    shots = customer_shots(int(rate * seconds), plan.customers, offset=offset)
    bench.fakes.call("reset")
    bench.fakes.call("delay", plan.model_delay)
    with bench.ours(name) as service:
        outcomes = OpenLoop(service.url).run(shots, rate)
        acked = {o.tag for o in outcomes if o.ok}
        last_ack = max(o.done for o in outcomes)
        bench.log(f"  {len(acked)}/{len(shots)} acknowledged; waiting for the answers...")
        _wait_for(lambda: bench.fakes.call("text_count") >= len(acked), plan.drain_timeout)
        _wait_for(lambda: _idle(service), 30)
        time.sleep(0.5)  # a duplicate answer would arrive now
        memory = service.worker_memory()
    texts = bench.fakes.call("texts")
    failed = bench.fakes.call("failed_sends")
    bench.fakes.call("delay", 0.0)
    replies = Counter(reply_to for _, reply_to, _ in texts)
    answered_at = {reply_to: at for _, reply_to, at in texts}
    scheduled = {o.tag: o.scheduled for o in outcomes}
    answer_times = sorted(answered_at[tag] - scheduled[tag] for tag in acked if tag in answered_at)
    spans = [(scheduled[tag], answered_at[tag]) for tag in acked if tag in answered_at]
    return AckResult(
        summary=Summary.of(rate, outcomes),
        expected=len(acked),
        answered_once=sum(replies[tag] == 1 for tag in acked),
        missing=sum(replies[tag] == 0 for tag in acked),
        duplicates=sum(replies[tag] > 1 for tag in acked),
        strays=sum(n for tag, n in replies.items() if tag not in scheduled),
        failed_sends=failed,
        drain_seconds=max((at for _, _, at in texts), default=last_ack) - last_ack,
        answer_p50=percentile(answer_times, 50),
        answer_p99=percentile(answer_times, 99),
        answer_max=answer_times[-1] if answer_times else math.nan,
        memory=memory,
        in_flight_peak=peak_overlap(spans),
    )


def peak_overlap(spans: Sequence[tuple[float, float]]) -> int:
    """The most intervals open at one moment."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    peak = current = 0
    for _, change in events:
        current += change
        peak = max(peak, current)
    return peak


# first requests after a start, a new connection each -------------------------------------------------------------


FIRST_WINDOW = 0.3  # seconds: "the first requests" of the probe


def first_requests(bench: Bench) -> ProbeResult:
    """From the first HTTP answer after gunicorn is launched, webhooks at ``probe_rate`` on a new connection each
    (as Meta sends them); ours with the 2 s model, then bare Flask, each launched fresh."""
    plan = bench.plan
    bench.fakes.call("reset")
    bench.fakes.call("delay", plan.model_delay)
    shots = customer_shots(int(plan.probe_rate * plan.probe_seconds), plan.customers, offset=3 * 10**6)
    results = {}
    for kind, app in (("ours", "app:app"), ("bare", "bench.bare_app:app")):
        env = bench.environment("probe" if kind == "ours" else "bare")
        service = Gunicorn(app, env, bench.workdir, workers=plan.workers, threads=plan.threads, name=f"probe-{kind}")
        launched = time.monotonic()
        service.launch()
        try:
            ready = service.first_answer() - launched
            outcomes = OpenLoop(service.url, fresh=True).run(shots, plan.probe_rate)
        finally:
            service.stop()
        start = min(o.scheduled for o in outcomes)
        first = max((o.latency for o in outcomes if o.scheduled - start < FIRST_WINDOW), default=math.nan)
        results[kind] = (Summary.of(plan.probe_rate, outcomes), first, ready)
        bench.log(
            f"  {kind}: ready {ready:.2f} s after launch; p50 {results[kind][0].p50 * 1e3:.1f} ms, "
            f"p99 {results[kind][0].p99 * 1e3:.1f} ms, first {FIRST_WINDOW:g} s max {first * 1e3:.1f} ms"
        )
    bench.fakes.call("delay", 0.0)
    return ProbeResult(
        ours=results["ours"][0],
        bare=results["bare"][0],
        ours_first=results["ours"][1],
        bare_first=results["bare"][1],
        ours_ready_seconds=results["ours"][2],
        bare_ready_seconds=results["bare"][2],
    )


# 2: intake ceiling, ours against bare Flask ---------------------------------------------------------------------


def passes(summary: Summary) -> bool:
    return summary.errors == 0 and summary.p99 < CEILING_P99


@dataclass(frozen=True)
class Climb:
    """Every run of one climb, the ceiling, and why the climb stopped short of a failure, if it did."""

    runs: list[Summary]
    ceiling: float
    stopped: str | None = None  # "top of the ladder" or "generator limit": the real ceiling is higher


def climb(run_step: Callable[[float], Summary], ladder: Sequence[float], refine: int) -> Climb:
    """Run rates up the ladder until one fails, then bisect (geometrically) ``refine`` times.

    A run whose generator itself fell behind (``GENERATOR_LAG`` at p99) measured the client, not the server: the
    climb stops there and the ceiling is a lower bound. Every run is kept (a rate that failed once and passed on its
    second run appears twice).
    """
    runs: list[Summary] = []

    def trial(rate: float) -> bool | None:
        """A rate passes if one of two runs does: one stall of the shared machine must not end the climb."""
        for _ in range(2):
            summary = run_step(rate)
            runs.append(summary)
            if summary.send_lag_p99 > GENERATOR_LAG:
                return None
            if passes(summary):
                return True
        return False

    passed: float | None = None
    failed: float | None = None
    for rate in ladder:
        verdict = trial(rate)
        if verdict is None:
            return Climb(runs, passed or 0.0, "generator limit")
        if not verdict:
            failed = rate
            break
        passed = rate
    if failed is None:
        return Climb(runs, passed or 0.0, "top of the ladder")
    for _ in range(refine):
        if passed is None:
            break
        middle = float(round(math.sqrt(passed * failed), -1))
        if middle in (passed, failed):
            break
        verdict = trial(middle)
        if verdict is None:
            break
        if verdict:
            passed = middle
        else:
            failed = middle
    return Climb(runs, passed or 0.0)


def _step(bench: Bench, service: Gunicorn, rate: float, label: str) -> Summary:
    plan = bench.plan
    warmup = customer_shots(max(1, int(50 * plan.warmup_seconds)), plan.customers, offset=10**6)
    OpenLoop(service.url).run(warmup, 50)
    shots = customer_shots(max(1, int(rate * plan.step_seconds)), plan.customers)
    summary = Summary.of(rate, OpenLoop(service.url).run(shots, rate))
    bench.log(
        f"  {label:4} {rate:6.0f}/s: p50 {summary.p50 * 1e3:7.1f} ms  p99 {summary.p99 * 1e3:7.1f} ms"
        f"  errors {summary.errors}  generator lag p99 {summary.send_lag_p99 * 1e3:5.1f} ms"
        f"  {'pass' if passes(summary) else 'FAIL'}"
    )
    return summary


def intake_ceiling(bench: Bench) -> CeilingResult:
    plan = bench.plan
    bench.fakes.call("reset")
    bench.fakes.call("delay", plan.model_delay)

    def ours_step(rate: float) -> Summary:
        with bench.ours(f"ceiling-{rate:g}") as service:
            return _step(bench, service, rate, "ours")

    ours = climb(ours_step, plan.ladder, plan.refine)
    with bench.bare() as service:
        bare = climb(lambda rate: _step(bench, service, rate, "bare"), plan.ladder, plan.refine)
    bench.fakes.call("delay", 0.0)
    return CeilingResult(ours=ours, bare=bare)


# 3: pipeline overhead with an instant model ---------------------------------------------------------------------


def pipeline_overhead(bench: Bench) -> PipelineResult:
    plan = bench.plan
    texts = [f"Pipeline check {n}: what time do you close today?" for n in range(plan.pipeline_messages)]
    shots = [text_shot(text, customer(50_000 + n)) for n, text in enumerate(texts)]
    bench.fakes.call("reset")
    bench.fakes.call("delay", 0.0)
    with bench.ours("pipeline") as service:
        outcomes = OpenLoop(service.url, connections=4).run(shots, plan.pipeline_rate)
        _wait_for(lambda: bench.fakes.call("text_count") >= len(shots), 60, interval=0.1)
        replies = {reply_to: at for _, reply_to, at in bench.fakes.call("texts")}
        reads = dict(bench.fakes.call("reads"))
        chats = {text: at for at, _, _, text in bench.fakes.call("chats")}
    total, to_typing, to_model, model_to_reply = [], [], [], []
    for text, outcome in zip(texts, outcomes, strict=True):
        replied = replies.get(outcome.tag)
        if replied is None:
            continue
        total.append(replied - outcome.sent)
        if outcome.tag in reads:
            to_typing.append(reads[outcome.tag] - outcome.sent)
        if text in chats:
            to_model.append(chats[text] - outcome.sent)
            model_to_reply.append(replied - chats[text])
    return PipelineResult(
        count=len(total),
        errors=sum(not o.ok for o in outcomes) + len(shots) - len(total),
        total=sorted(total),
        to_typing=sorted(to_typing),
        to_model=sorted(to_model),
        model_to_reply=sorted(model_to_reply),
        ack=sorted(o.done - o.sent for o in outcomes),
    )


# 4: outbound throughput of the Graph client ---------------------------------------------------------------------


def outbound_throughput(bench: Bench) -> OutboundResult:
    from whatsapp.client import GraphClient

    plan = bench.plan
    bench.fakes.call("reset")
    client = GraphClient(
        access_token=ACCESS_TOKEN,
        phone_number_id=webhooks.PHONE_NUMBER_ID,
        graph_url=bench.fakes.graph_url,
        pool_size=plan.outbound_threads + 2,  # as the service sizes it: worker threads + 2
    )

    def send(n: int) -> float:
        started = time.perf_counter()
        client.send_text(customer(n % 500), f"Your order {n} left our warehouse this morning.", reply_to=None)
        return time.perf_counter() - started

    with client, ThreadPoolExecutor(plan.outbound_threads) as pool:
        list(pool.map(send, range(plan.outbound_threads * 2)))  # open the connections first
        bench.fakes.call("reset")
        started = time.perf_counter()
        latencies = list(pool.map(send, range(plan.outbound_sends)))
        seconds = time.perf_counter() - started
        connections = _connections_opened(client)
    return OutboundResult(
        sends=plan.outbound_sends,
        threads=plan.outbound_threads,
        seconds=seconds,
        delivered=bench.fakes.call("text_count"),
        connections=connections,
        latencies=sorted(latencies),
    )


def _connections_opened(client: object) -> int | None:
    """How many TCP connections urllib3 opened in all (keep-alive: as many as threads, not as many as sends)."""
    try:
        manager = client._session.get_adapter("http://").poolmanager  # type: ignore[attr-defined]
        return sum(manager.pools[key].num_connections for key in manager.pools.keys())
    except (AttributeError, KeyError):
        return None


# 5: cost against conversation length ----------------------------------------------------------------------------


def conversation_cost(bench: Bench) -> TurnsResult:
    plan = bench.plan
    who = customer(90_000)
    bench.fakes.call("reset")
    bench.fakes.call("delay", 0.0)
    sent: dict[str, float] = {}
    with bench.ours("turns") as service:
        connection = http.client.HTTPConnection("127.0.0.1", int(service.url.rsplit(":", 1)[1]), timeout=10)
        for number in range(1, plan.turns + 1):
            shot = text_shot(
                f"Turn {number}: do you have the blue jacket in size M, and how long does delivery to Leeds take?",
                who,
            )
            sent[shot.tag] = time.monotonic()
            connection.request("POST", shot.path, body=shot.body, headers=dict(shot.headers))
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"turn {number}: webhook answered {response.status}")
            if not bench.fakes.call("wait_texts", number, who, 30.0):
                raise RuntimeError(f"turn {number}: no reply within 30 s\n{service.logs()[-3000:]}")
        connection.close()
        texts = [(reply_to, at) for to, reply_to, at in bench.fakes.call("texts") if to == who]
        chats = bench.fakes.call("chats")
    order = list(sent)
    replies = dict(texts)
    turns = [
        Turn(number=n + 1, request_bytes=size, messages=count, seconds=replies[order[n]] - sent[order[n]])
        for n, (_, size, count, _) in enumerate(chats[: plan.turns])
    ]
    return TurnsResult(
        turns=turns,
        checkpoints=tuple(c for c in plan.checkpoints if c <= len(turns)),
        history_tokens=plan.history_tokens or OpenAISettings().history_tokens,
    )
