"""Summarise a py-spy ``--format raw`` profile (collapsed stacks): where the service's threads spend their time.

``python -m bench --py-spy DIR`` writes one profile per measurement; then ``python -m bench.spy DIR/turns.txt``
prints the functions with the most samples, inclusive (the function and what it calls) and self (the function's
own lines), optionally only for stacks that pass through ``--within`` (``--within Worker._run_slot`` for the
background threads, ``--within receive`` for the webhook).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_LOCATION = re.compile(r" \([^()]*:\d+\)$")


@dataclass(frozen=True)
class Profile:
    samples: int
    inclusive: Counter[str]
    own: Counter[str]


def function(frame: str) -> str:
    """``Worker._run (whatsapp/worker.py:230)`` -> ``Worker._run (whatsapp/worker.py)``: lines merged."""
    match = _LOCATION.search(frame)
    if match is None:
        return frame
    path = match.group(0).rsplit(":", 1)[0]
    return frame[: match.start()] + path + ")"


def read(lines: Iterable[str], within: str | None = None) -> Profile:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    samples = 0
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [function(frame) for frame in stack.split(";") if not frame.startswith(("process ", "thread "))]
        if within and not any(within in frame for frame in frames):
            continue
        if not frames:
            continue
        n = int(count)
        samples += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    return Profile(samples=samples, inclusive=inclusive, own=own)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spy", description=__doc__)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--within", help="only stacks through a frame containing this text")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    with args.profile.open(encoding="utf-8", errors="replace") as lines:
        profile = read(lines, args.within)
    if not profile.samples:
        print("no samples")
        return 1
    print(f"{profile.samples} samples" + (f" through {args.within}" if args.within else ""))
    for title, counter in (("inclusive", profile.inclusive), ("self", profile.own)):
        print(f"\n{title}:")
        for name, n in counter.most_common(args.top):
            print(f"{n / profile.samples:7.1%}  {name[:140]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
