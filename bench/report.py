"""The results as a table against the issue's targets, detail tables, a JSON record and the ack-latency plot."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .load import Summary, percentile
from .scenarios import (
    CEILING_P99,
    GENERATOR_LAG,
    AckResult,
    CeilingResult,
    Climb,
    OutboundResult,
    PipelineResult,
    Plan,
    ProbeResult,
    TurnsResult,
    passes,
)

ACK_P99_TARGET = 0.020  # keep-alive connections, under load
FIRST_P99_TARGET = 0.050  # a new connection per request, from the first answer after a start
ANSWER_MARGIN = 1.0  # seconds: webhook to answer at Graph, p99 <= the model's time + this
CEILING_RATIO_TARGET = 0.60
PIPELINE_P50_TARGET = 0.015
OUTBOUND_TARGET = 500.0
TURN_GROWTH_TARGET = 1.2
RSS_TARGET_MB = 150.0


@dataclass(frozen=True)
class Row:
    measurement: str
    result: str
    target: str
    verdict: str


def ms(seconds: float) -> str:
    if seconds != seconds:  # NaN: nothing measured
        return "n/a"
    return f"{seconds * 1e3:.1f} ms" if seconds < 10 else f"{seconds:.0f} s"


def mb(kb: int) -> float:
    return kb / 1024


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = "unknown"
    memory_kb = 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory_kb = int(line.split()[1])
    except OSError:
        pass
    versions = {}
    for package in ("gunicorn", "flask", "requests", "openai"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        **versions,
    }


# rows against the targets ---------------------------------------------------------------------------------------


def once(result: AckResult) -> tuple[bool, str]:
    """Whether every acknowledged message got exactly one answer, and the words for it."""
    s = result.summary
    ok = result.answered_once == result.expected == s.count and result.strays == 0
    answered = f"{result.answered_once}/{s.count} answered exactly once"
    if not ok:
        answered += f" (missing {result.missing}, twice+ {result.duplicates}, strays {result.strays})"
    return ok, answered


def ack_row(result: AckResult, plan: Plan) -> Row:
    s = result.summary
    ok, answered = once(result)
    misses = []
    if s.p99 > ACK_P99_TARGET:
        misses.append(f"p99 {s.p99 / ACK_P99_TARGET:.1f}x the target")
    if s.errors:
        misses.append(f"{s.errors} errors")
    if not ok:
        misses.append("not every message answered once")
    bare = result.bare
    beside = f"; bare Flask on the same load: p50 {ms(bare.p50)}, p99 {ms(bare.p99)}" if bare else ""
    return Row(
        f"1. Ack latency: {plan.load_rate:g}/s for {plan.load_seconds:g} s, {plan.customers} customers, "
        f"{plan.model_delay:g} s model",
        f"p50 {ms(s.p50)}, p99 {ms(s.p99)}, max {ms(s.max)}; {s.errors} errors; {answered}{beside}",
        f"p99 <= {ACK_P99_TARGET * 1e3:g} ms; no errors; each answered once",
        "met" if not misses else "MISSED: " + "; ".join(misses),
    )


def answer_row(result: AckResult, plan: Plan, number: str = "7", what: str = "") -> Row:
    target = plan.model_delay + ANSWER_MARGIN
    ok, answered = once(result)
    misses = []
    if not result.answer_p99 <= target:
        misses.append(f"p99 {result.answer_p99 - plan.model_delay:.2f} s over the model's time")
    if not ok:
        misses.append("not every message answered once")
    return Row(
        f"{number}. Answer time, webhook to reply at Graph{what}",
        f"p50 {ms(result.answer_p50)}, p99 {ms(result.answer_p99)}, max {ms(result.answer_max)}, against the "
        f"model's {plan.model_delay:g} s; {answered}; at most {result.in_flight_peak} in flight at once",
        f"p99 <= model + {ANSWER_MARGIN:g} s ({target:g} s)",
        "met" if not misses else "MISSED: " + "; ".join(misses),
    )


def probe_row(result: ProbeResult, plan: Plan) -> Row:
    ours, bare = result.ours, result.bare
    misses = []
    if ours.p99 > FIRST_P99_TARGET:
        misses.append(f"p99 {ours.p99 / FIRST_P99_TARGET:.1f}x the target")
    if ours.errors:
        misses.append(f"{ours.errors} errors")
    return Row(
        f"8. First requests after a start: {plan.probe_rate:g}/s for {plan.probe_seconds:g} s, a new connection "
        "each, from the first HTTP answer",
        f"ours p50 {ms(ours.p50)}, p99 {ms(ours.p99)}, max {ms(ours.max)}, first 0.3 s max {ms(result.ours_first)}; "
        f"{ours.errors} errors; bare Flask p50 {ms(bare.p50)}, p99 {ms(bare.p99)}, max {ms(bare.max)}, first 0.3 s "
        f"max {ms(result.bare_first)}; HTTP up {result.ours_ready_seconds:.1f} s (bare "
        f"{result.bare_ready_seconds:.1f} s) after launch",
        f"p99 <= {FIRST_P99_TARGET * 1e3:g} ms; no errors",
        "met" if not misses else "MISSED: " + "; ".join(misses),
    )


def in_flight_row(result: AckResult, plan: Plan) -> Row:
    s = result.summary
    ok, answered = once(result)
    workers = result.memory
    rss = ", ".join(f"{mb(m.rss_kb):.0f} MB" for m in workers) or "n/a"
    cpu = sum(m.cpu_seconds for m in workers)
    return Row(
        f"9. Conversations in flight: {plan.inflight_rate:g}/s for {plan.inflight_seconds:g} s, "
        f"{plan.model_delay:g} s model",
        f"at most {result.in_flight_peak} in flight at once; answer p50 {ms(result.answer_p50)}, p99 "
        f"{ms(result.answer_p99)}; ack p50 {ms(s.p50)}, p99 {ms(s.p99)}, {s.errors} errors; {answered}; RSS {rss}; "
        f"CPU {cpu:.1f} s ({cpu / max(1, result.expected) * 1e3:.1f} ms per message)",
        "reported (500 in flight per instance)",
        "answered once" if ok and not s.errors else "MISSED: errors or answers missing",
    )


def ceiling_row(result: CeilingResult, plan: Plan) -> Row:
    def ceiling(climb: Climb) -> str:
        return f">= {climb.ceiling:g}/s ({climb.stopped})" if climb.stopped else f"{climb.ceiling:g}/s"

    ratio = result.ratio
    bound = "<= " if result.bare.stopped and not result.ours.stopped else ""
    verdict = "met" if ratio >= CEILING_RATIO_TARGET else f"MISSED by {(CEILING_RATIO_TARGET - ratio) * 100:.0f} points"
    if bound and ratio >= CEILING_RATIO_TARGET:
        verdict = "unknown: bare Flask's ceiling is beyond what the generator can offer"
    return Row(
        f"2. Intake ceiling (p99 < {CEILING_P99 * 1e3:.0f} ms, no errors; {plan.model_delay:g} s model)",
        f"ours {ceiling(result.ours)}, bare Flask {ceiling(result.bare)}: {bound}{ratio:.0%}",
        ">= 60 % of bare Flask",
        verdict,
    )


def pipeline_row(result: PipelineResult, plan: Plan) -> Row:
    p50, p99 = percentile(result.total, 50), percentile(result.total, 99)
    verdict = "met" if p50 <= PIPELINE_P50_TARGET else f"MISSED: p50 {p50 / PIPELINE_P50_TARGET:.1f}x the target"
    errors = f"; {result.errors} not answered" if result.errors else ""
    return Row(
        f"3. Pipeline overhead, instant model ({result.count} messages at {plan.pipeline_rate:g}/s)",
        f"p50 {ms(p50)}, p99 {ms(p99)}{errors}",
        "p50 <= 15 ms",
        verdict if not result.errors else verdict + "; messages not answered",
    )


def outbound_row(result: OutboundResult) -> Row:
    rate = result.per_second
    connections = f", {result.connections} connections" if result.connections is not None else ""
    lost = result.sends - result.delivered
    verdict = "met" if rate >= OUTBOUND_TARGET else f"MISSED: {rate / OUTBOUND_TARGET:.0%} of the target"
    return Row(
        f"4. Outbound: GraphClient.send_text, {result.sends} sends, {result.threads} threads",
        f"{rate:.0f} sends/s; p50 {ms(percentile(result.latencies, 50))}, "
        f"p99 {ms(percentile(result.latencies, 99))}{connections}" + (f"; {lost} not delivered" if lost else ""),
        ">= 500 sends/s",
        verdict if not lost else verdict + "; sends lost",
    )


def turns_row(result: TurnsResult) -> Row:
    points = result.checkpoints
    parts = [f"turn {n}: {result.at(n).request_bytes / 1024:.1f} KB, {ms(result.seconds_around(n))}" for n in points]
    middle, last = points[-2], points[-1]
    time_growth = result.seconds_around(last) / result.seconds_around(middle)
    size_growth = result.at(last).request_bytes / result.at(middle).request_bytes
    misses = []
    if time_growth > TURN_GROWTH_TARGET:
        misses.append(f"time {time_growth:.2f}x")
    if size_growth > TURN_GROWTH_TARGET:
        misses.append(f"size {size_growth:.2f}x")
    return Row(
        f"5. Cost against conversation length (one customer, {len(result.turns)} turns, instant model)",
        "; ".join(parts) + f"; turn {last} / turn {middle}: time {time_growth:.2f}x, size {size_growth:.2f}x",
        f"turn {last} <= 1.2 x turn {middle}",
        "met" if not misses else "MISSED: " + ", ".join(misses),
    )


def memory_row(result: AckResult) -> Row:
    workers = result.memory
    now = ", ".join(f"{mb(m.rss_kb):.0f} MB" for m in workers) or "n/a"
    peak = ", ".join(f"{mb(m.peak_kb):.0f} MB" for m in workers) or "n/a"
    worst = max((mb(m.rss_kb) for m in workers), default=float("nan"))
    verdict = "met" if worst <= RSS_TARGET_MB else f"MISSED by {worst - RSS_TARGET_MB:.0f} MB"
    cpu = sum(m.cpu_seconds for m in workers)
    per_message = (
        f"; CPU {cpu:.1f} s in all, {cpu / result.expected * 1e3:.1f} ms per message" if result.expected else ""
    )
    return Row(
        "6. RSS per gunicorn worker after the load run",
        f"{now} (peak {peak}){per_message}",
        f"<= {RSS_TARGET_MB:g} MB per worker",
        verdict,
    )


def markdown_table(rows: list[Row]) -> str:
    header = Row("Measurement", "Result", "Target", "Verdict")
    lines = [_line(header), "|---|---|---|---|"]
    lines += [_line(row) for row in rows]
    return "\n".join(lines)


def _line(row: Row) -> str:
    return f"| {row.measurement} | {row.result} | {row.target} | {row.verdict} |"


# detail tables --------------------------------------------------------------------------------------------------


def final_runs(summaries: list[Summary]) -> dict[float, list[Summary]]:
    """The runs at each rate, in order: one, or two when the first failed."""
    runs: dict[float, list[Summary]] = {}
    for summary in summaries:
        runs.setdefault(summary.rate, []).append(summary)
    return runs


def ceiling_table(result: CeilingResult) -> str:
    stats = ("p50", "p99", "max", "errors")
    columns = ["offered rate"] + [f"{app} {what}" for app in ("ours", "bare") for what in stats]
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    ours, bare = final_runs(result.ours.runs), final_runs(result.bare.runs)
    for rate in sorted(ours.keys() | bare.keys()):
        cells = [f"{rate:g}/s"]
        for runs in (ours.get(rate), bare.get(rate)):
            if not runs:
                cells += ["", "", "", ""]
                continue
            last = runs[-1]
            p99 = ms(last.p99) + ("" if passes(last) else " ✗")
            if last.send_lag_p99 > GENERATOR_LAG:
                p99 += f" (generator lag {ms(last.send_lag_p99)}: not a server figure)"
            if len(runs) > 1:
                p99 += f" (1st run {ms(runs[0].p99)}{'' if passes(runs[0]) else ' ✗'})"
            cells += [ms(last.p50), p99, ms(last.max), str(last.errors)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pipeline_table(result: PipelineResult) -> str:
    lines = ["| stage | p50 | p99 |", "|---|---|---|"]
    stages = [
        ("webhook sent -> 200 (ack)", result.ack),
        ("webhook sent -> typing indicator at Graph", result.to_typing),
        ("webhook sent -> chat request at the model", result.to_model),
        ("chat request at the model -> reply at Graph", result.model_to_reply),
        ("webhook sent -> reply at Graph (total)", result.total),
    ]
    for name, values in stages:
        lines.append(f"| {name} | {ms(percentile(values, 50))} | {ms(percentile(values, 99))} |")
    return "\n".join(lines)


def turns_table(result: TurnsResult) -> str:
    lines = ["| turn | request bytes | messages in request | turn time (median of +-5 turns) |", "|---|---|---|---|"]
    for number in result.checkpoints:
        turn = result.at(number)
        lines.append(f"| {number} | {turn.request_bytes:,} | {turn.messages} | {ms(result.seconds_around(number))} |")
    return "\n".join(lines)


def turns_details(result: TurnsResult) -> str:
    reached = result.budget_reached_at
    if reached is None:
        return f"The history budget ({result.history_tokens} tokens) was not reached in {len(result.turns)} turns."
    low, high = result.plateau() or (0, 0)
    return (
        f"The history budget ({result.history_tokens} tokens) is reached at turn {reached}; from there to turn "
        f"{len(result.turns)} every request is {low:,} to {high:,} bytes."
    )


def ack_details(result: AckResult) -> str:
    return (
        f"answers: drained {result.drain_seconds:.1f} s after the last 200; webhook -> answer at Graph "
        f"p50 {ms(result.answer_p50)}, p99 {ms(result.answer_p99)}, max {ms(result.answer_max)}; "
        f"failed sends at Graph: {result.failed_sends}; generator lag p99 {ms(result.summary.send_lag_p99)}"
    )


# the JSON record and the plot -----------------------------------------------------------------------------------


def to_json(path: Path, record: dict[str, Any]) -> None:
    def default(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return dataclasses.asdict(value)  # type: ignore[arg-type]
        if isinstance(value, Path):
            return str(value)
        raise TypeError(type(value).__name__)

    path.write_text(json.dumps(record, indent=1, default=default) + "\n")


def plot(path: Path, ceiling: CeilingResult, title: str) -> None:
    """Ack-latency p50 and p99 against offered rate, ours beside bare Flask (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5), dpi=120)
    for name, climb, colour in (("ours", ceiling.ours, "tab:blue"), ("bare Flask", ceiling.bare, "tab:grey")):
        summaries = climb.runs
        ordered = [runs[-1] for _, runs in sorted(final_runs(summaries).items())]
        ordered = [s for s in ordered if s.send_lag_p99 <= GENERATOR_LAG]  # the client's limit, not the server's
        rates = [s.rate for s in ordered]
        axes.plot(rates, [s.p50 * 1e3 for s in ordered], "o--", color=colour, label=f"{name} p50")
        axes.plot(rates, [s.p99 * 1e3 for s in ordered], "o-", color=colour, label=f"{name} p99", linewidth=2)
        failed = [s for s in ordered if s.errors]
        if failed:
            axes.plot([s.rate for s in failed], [s.p99 * 1e3 for s in failed], "x", color="tab:red", markersize=10)
    axes.axhline(CEILING_P99 * 1e3, color="tab:red", linestyle=":", label="ceiling criterion: p99 100 ms")
    axes.axhline(
        ACK_P99_TARGET * 1e3, color="tab:green", linestyle=":", label=f"ack target: p99 {ACK_P99_TARGET * 1e3:g} ms"
    )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("offered rate (signed webhooks per second, open loop)")
    axes.set_ylabel("time to 200 (ms, from the scheduled send)")
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
