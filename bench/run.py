"""``python -m bench``: run the measurements, print the table, optionally save JSON and the plot.

The bench starts the real service under gunicorn and the fakes on loopback; it needs nothing but the repo's
requirements (matplotlib only with ``--plot``, py-spy only with ``--py-spy``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from . import report
from .scenarios import (
    FULL,
    QUICK,
    Bench,
    ack_latency,
    conversation_cost,
    first_requests,
    in_flight,
    intake_ceiling,
    outbound_throughput,
    pipeline_overhead,
)

MEASUREMENTS = ("ack", "first", "inflight", "pipeline", "turns", "outbound", "ceiling")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts: proves every measurement runs (seconds)")
    parser.add_argument("--only", nargs="+", choices=MEASUREMENTS, help="run only these (memory comes with ack)")
    parser.add_argument("--workers", type=int, help="gunicorn --workers (default 2)")
    parser.add_argument("--threads", type=int, help="gunicorn --threads (default 8)")
    parser.add_argument("--worker-threads", type=int, help="the service's background threads per process")
    parser.add_argument("--rate", type=float, help="offered rate of the ack-latency run (default 100/s)")
    parser.add_argument("--seconds", type=float, help="length of the ack-latency run (default 10 s)")
    parser.add_argument("--inflight-rate", type=float, help="offered rate of the in-flight run (default 250/s)")
    parser.add_argument("--history-tokens", type=int, help="the service's openai.history_tokens (default 8000)")
    parser.add_argument("--model-delay", type=float, help="seconds the fake model takes (default 2)")
    parser.add_argument("--ladder", type=float, nargs="+", help="offered rates of the intake-ceiling climb")
    parser.add_argument("--refine", type=int, help="bisection steps after the climb (default 2)")
    parser.add_argument("--turns", type=int, help="length of the conversation (default 500)")
    parser.add_argument("--json", type=Path, help="write every number to this file")
    parser.add_argument("--plot", type=Path, help="write the ack-latency plot (PNG; needs matplotlib)")
    parser.add_argument("--py-spy", type=Path, dest="py_spy", help="profile the service into this folder")
    parser.add_argument("--keep", action="store_true", help="keep the working folder (logs, stores)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    plan = QUICK if args.quick else FULL
    overrides = {
        "workers": args.workers,
        "threads": args.threads,
        "worker_threads": args.worker_threads,
        "load_rate": args.rate,
        "load_seconds": args.seconds,
        "inflight_rate": args.inflight_rate,
        "model_delay": args.model_delay,
        "ladder": tuple(args.ladder) if args.ladder else None,
        "refine": args.refine,
        "turns": args.turns,
        "history_tokens": args.history_tokens,
    }
    plan = dataclasses.replace(plan, **{key: value for key, value in overrides.items() if value is not None})
    chosen = args.only or MEASUREMENTS
    if args.plot and "ceiling" not in chosen:
        print("--plot needs the ceiling measurement", file=sys.stderr)
        return 2

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    command = "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv)
    log(f"{command}: gunicorn --workers {plan.workers} --threads {plan.threads}; working in {workdir}")
    started = time.monotonic()
    load_before = f"{os.getloadavg()[0]:.2f}"
    results: dict[str, object] = {}
    bench = Bench(plan, workdir, profile_dir=args.py_spy, log=log)
    try:
        steps = {
            "ack": ack_latency,
            "first": first_requests,
            "inflight": in_flight,
            "pipeline": pipeline_overhead,
            "turns": conversation_cost,
            "outbound": outbound_throughput,
            "ceiling": intake_ceiling,
        }
        for name in MEASUREMENTS:
            if name in chosen:
                log(f"{name}...")
                step_started = time.monotonic()
                results[name] = steps[name](bench)
                log(f"{name}: {time.monotonic() - step_started:.1f} s")
    finally:
        bench.close()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    rows = []
    if "ack" in results:
        rows.append(report.ack_row(results["ack"], plan))
    if "ceiling" in results:
        rows.append(report.ceiling_row(results["ceiling"], plan))
    if "pipeline" in results:
        rows.append(report.pipeline_row(results["pipeline"], plan))
    if "outbound" in results:
        rows.append(report.outbound_row(results["outbound"]))
    if "turns" in results:
        rows.append(report.turns_row(results["turns"]))
    if "ack" in results:
        rows.append(report.memory_row(results["ack"]))
        rows.append(report.answer_row(results["ack"], plan))
    if "first" in results:
        rows.append(report.probe_row(results["first"], plan))
    if "inflight" in results:
        rows.append(report.in_flight_row(results["inflight"], plan))

    print(report.markdown_table(rows))
    if "ack" in results:
        print("\n" + report.ack_details(results["ack"]))
    if "ceiling" in results:
        print("\nIntake ladder (time to 200 from the scheduled send; ✗ = p99 over 100 ms, or errors):\n")
        print(report.ceiling_table(results["ceiling"]))
    if "pipeline" in results:
        print("\nPipeline stages (instant model):\n")
        print(report.pipeline_table(results["pipeline"]))
    if "turns" in results:
        print("\nConversation turns:\n")
        print(report.turns_table(results["turns"]))
        print("\n" + report.turns_details(results["turns"]))
    info = report.machine()
    print(
        f"\nTotal {time.monotonic() - started:.0f} s on {info['nproc']} x {info['cpu']}, {info['memory_gb']} GB, "
        f"Python {info['python']}, gunicorn {info['gunicorn']}; load average before {load_before}, "
        f"after {os.getloadavg()[0]:.2f} (other processes on the machine add noise)"
    )

    if args.json:
        record = {"command": command, "plan": plan, "machine": info, "load_average_before": load_before}
        report.to_json(args.json, {**record, **results})
    if args.plot:
        title = (
            f"Ack latency vs offered rate: gunicorn {plan.workers} workers x {plan.threads} threads, "
            f"{plan.model_delay:g} s model\n{info['nproc']} x {info['cpu']}, Python {info['python']}"
        )
        report.plot(args.plot, results["ceiling"], title)
    return 0
