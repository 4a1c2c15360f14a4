"""projectionist beside the peer, from files of the same run: python bench/compare.py DIR

DIR holds the JSON files of `bench/run.sh --peer`: `peer-N.json` (the peer's script, both
backends) and `orders-<backend>-N.json` (projectionist), N the round. Prints, per backend and
phase, the medians of both and their ratio (above 1: projectionist ahead), then each round's
ratio, so that a ratio is only ever taken between figures of the same machine and the same run.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

PEER_BACKEND = {"sqlite": "sqlite", "postgresql": "postgres"}
# The bare sqlite3 floor (bench/floor.py) beside the peer's SQLite figures: the most any
# framework on SQLite could reach here.
SHOWN = {**PEER_BACKEND, "floor": "sqlite"}

# (label, projectionist key, peer phase, peer key, higher is better)
PHASES: tuple[tuple[str, str, str, str, bool], ...] = (
    ("W commands/s", "write_cmds_per_s", "W", "commands_per_s", True),
    ("W8 commands/s", "write8_cmds_per_s", "W8", "commands_per_s", True),
    ("P catch-up events/s", "catchup_events_per_s", "P", "events_per_s", True),
    ("L commit->visible p50 ms", "visibility_p50_ms", "L", "p50_ms", False),
    ("L commit->visible p99 ms", "visibility_p99_ms", "L", "p99_ms", False),
)


def rounds(directory: Path) -> list[tuple[dict[str, Any], dict[str, dict[str, Any]]]]:
    """(peer result, {backend: projectionist result}) per round, in round order; the bare
    sqlite3 floor of the round, when measured, as the backend "floor"."""
    found = []
    for peer_file in sorted(directory.glob("peer-*.json")):
        number = peer_file.stem.removeprefix("peer-")
        ours = {
            backend: json.loads(path.read_text())
            for backend in (*PEER_BACKEND, "floor")
            if (path := directory / f"{'floor' if backend == 'floor' else 'orders-' + backend}"
                                    f"-{number}.json").exists()
        }
        found.append((json.loads(peer_file.read_text()), ours))
    return found


def ratio(ours: float | None, peer: float | None, higher_is_better: bool) -> float | None:
    """How far projectionist is ahead: above 1 is better, whichever way the figure runs."""
    if not ours or not peer:
        return None
    return ours / peer if higher_is_better else peer / ours


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[0])
        return 2
    found = rounds(Path(argv[0]))
    if not found:
        print(f"no peer-N.json files in {argv[0]}")
        return 2
    print(f"projectionist beside the peer: {len(found)} round(s) of the same run")
    print(f"{'backend':<11}{'phase':<27}{'projectionist':>14}{'peer':>10}{'ratio':>8}  rounds")
    for backend, peer_backend in SHOWN.items():
        for label, key, phase, peer_key, higher in PHASES:
            pairs = [
                (ours[backend].get(key), peer.get(peer_backend, {}).get(phase, {}).get(peer_key))
                for peer, ours in found
                if backend in ours
            ]
            pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
            if not pairs:
                continue
            per_round = [ratio(a, b, higher) for a, b in pairs]
            median: Callable[[list[float]], float] = statistics.median
            mine, theirs = median([a for a, _ in pairs]), median([b for _, b in pairs])
            both = ratio(mine, theirs, higher)
            shown = " ".join(f"{r:.2f}" for r in per_round if r is not None)
            print(f"{backend:<11}{label:<27}{mine:>14,.2f}{theirs:>10,.2f}"
                  f"{both or 0:>8.2f}  {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
