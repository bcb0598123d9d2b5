"""CPU seconds used by process trees (Linux /proc): where the two cores went during a run.

Throughput on this machine is CPU-bound, so "which process burned the CPU" is the first
split of a request's cost (intake's Python vs PostgreSQL vs broker vs followup vs wrk).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user+system CPU seconds) of one process, None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces; the fields after its closing parenthesis do not.
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def _all() -> dict[int, tuple[int, float]]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                found[int(entry.name)] = stat
    return found


def snapshot(roots: Mapping[str, int]) -> dict[str, dict[int, float]]:
    """CPU seconds of every process under each named root pid, by pid."""
    procs = _all()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _cpu) in procs.items():
        children.setdefault(ppid, []).append(pid)
    result: dict[str, dict[int, float]] = {}
    for name, root in roots.items():
        tree: dict[int, float] = {}
        todo = [root]
        while todo and len(tree) < 10_000:
            pid = todo.pop()
            if pid in procs:
                tree[pid] = procs[pid][1]
                todo.extend(children.get(pid, ()))
        result[name] = tree
    return result


def machine() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields) - idle) / _TICK, sum(fields) / _TICK


def machine_cores_busy(before: tuple[float, float], after: tuple[float, float]) -> float:
    """How many cores were busy, on average, between two machine() readings."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total * (os.cpu_count() or 1) if total else 0.0


def used_by_pid(before: dict[int, float], after: dict[int, float]) -> dict[int, float]:
    """CPU seconds each process of a tree used between two snapshots (new ones count whole)."""
    return {pid: cpu - before.get(pid, 0.0) for pid, cpu in after.items()}


def used(
    before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]
) -> dict[str, float]:
    """CPU seconds each named tree used between two snapshots."""
    return {
        name: sum(used_by_pid(before.get(name, {}), tree).values()) for name, tree in after.items()
    }
