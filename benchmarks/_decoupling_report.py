"""The decoupling benchmark's figures: one row per architecture and scenario, the table,
and one timeline plot per scenario."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from _openloop import Outcome

__all__ = ["plot", "summarize", "table"]

NAMES_OF_FAULT = ("icd10", "coder")  # the faulty model and the pipeline step that runs it


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 1) if values else None


def recovery_s(
    outcomes: list[Outcome], since_s: float, steady_p50_s: float, window_s: float
) -> float | None:
    """Seconds from ``since_s`` to the start of the first window (by send time) whose
    requests were all answered with a result at a p50 within 20% of steady; None if none."""
    last = max(o.sent_s for o in outcomes)
    start = since_s
    while start <= last:
        window = [o for o in outcomes if start <= o.sent_s < start + window_s]
        results = [o.latency_s for o in window if o.status == "result" and o.latency_s]
        complete = bool(window) and len(results) == len(window)
        if complete and float(np.median(results)) <= 1.2 * steady_p50_s:
            return round(start - since_s, 1)
        start += window_s
    return None


def summarize(
    outcomes: list[Outcome],
    *,
    seconds: float,
    steady: dict[int, dict[str, Any]] | None,
    steady_p50_s: float | None,
    recover_from_s: float | None,
    window_s: float,
    runs: Counter[str],
    keys: list[str],
) -> dict[str, Any]:
    """``steady``: the steady run's result per document; ``runs``: how often the faulty
    model finished each note key; ``keys``: the key of each outcome's document."""
    statuses = Counter(o.status for o in outcomes)
    results = [o.latency_s for o in outcomes if o.status == "result" and o.latency_s is not None]
    errors = [o for o in outcomes if o.status == "error"]
    naming = sum(any(n in o.error for n in NAMES_OF_FAULT) for o in errors)
    wrong = None  # the steady run is the reference
    if steady is not None:
        wrong = sum(
            o.status == "result" and o.doc in steady and o.result != steady[o.doc] for o in outcomes
        )
    expected = Counter(keys)
    extra_runs = sum(max(0, n - expected[k]) for k, n in runs.items())
    recovery = None
    if recover_from_s is not None and steady_p50_s is not None:
        recovery = recovery_s(outcomes, recover_from_s, steady_p50_s, window_s)
    return {
        "sent": len(outcomes),
        "result": statuses["result"],
        "error": statuses["error"],
        "error_names_model": naming,
        "lost": statuses["lost"],
        "wrong": wrong,
        "duplicate_answers": sum(o.wrong_id for o in outcomes),
        "duplicate_runs": extra_runs,
        "p50_ms": _pct(results, 50),
        "p95_ms": _pct(results, 95),
        "p99_ms": _pct(results, 99),
        "throughput_rps": round(statuses["result"] / seconds, 1) if seconds else None,
        "recover_s": recovery,
        "error_samples": sorted({o.error[:200] for o in errors})[:3],
    }


COLUMNS = [
    ("architecture", "{}"),
    ("scenario", "{}"),
    ("sent", "{}"),
    ("result", "{}"),
    ("error", "{}"),
    ("names model", "{}"),
    ("lost", "{}"),
    ("wrong", "{}"),
    ("dup. answers", "{}"),
    ("dup. runs", "{}"),
    ("p50 ms", "{}"),
    ("p95 ms", "{}"),
    ("p99 ms", "{}"),
    ("results/s", "{}"),
    ("recover s", "{}"),
    ("load avg", "{}"),
]
KEYS = [
    "architecture",
    "scenario",
    "sent",
    "result",
    "error",
    "error_names_model",
    "lost",
    "wrong",
    "duplicate_answers",
    "duplicate_runs",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "throughput_rps",
    "recover_s",
    "load_avg",
]


def table(rows: list[dict[str, Any]]) -> list[str]:
    """A Markdown table (also readable in a terminal)."""
    lines = ["| " + " | ".join(c for c, _ in COLUMNS) + " |"]
    lines.append("|" + "|".join("---" for _ in COLUMNS) + "|")
    for row in rows:
        cells = ["—" if row.get(k) is None else str(row[k]) for k in KEYS]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def plot(
    scenario: str,
    runs: dict[str, dict[str, Any]],  # architecture -> {"outcomes", "events", "deadline_s"}
    path: Path,
) -> None:
    """Latency of each request against its send time, one panel per architecture; errors
    and losses marked, the fault's events as vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 1, figsize=(10, 3.2 * len(runs)), dpi=110, sharex=True)
    for ax, (arch, run) in zip(np.atleast_1d(axes), runs.items(), strict=True):
        outcomes: list[Outcome] = run["outcomes"]
        top = run["deadline_s"] * 1000
        kinds = (
            ("result", "o", "tab:blue", "result"),
            ("error", "x", "tab:red", "error"),
        )
        for status, marker, color, label in kinds:
            chosen = [o for o in outcomes if o.status == status and o.latency_s is not None]
            if chosen:
                ax.scatter(
                    [o.sent_s for o in chosen],
                    [max(o.latency_s or 0, 1e-3) * 1000 for o in chosen],
                    s=6 if status == "result" else 14,
                    marker=marker,
                    color=color,
                    label=f"{label} ({len(chosen)})",
                    linewidths=0.8,
                )
        lost = [o.sent_s for o in outcomes if o.status == "lost"]
        if lost:
            ax.scatter(
                lost,
                [top] * len(lost),
                marker="v",
                color="black",
                s=14,
                label=f"lost ({len(lost)})",
            )
        for at, what in run["events"]:
            ax.axvline(at, color="tab:orange", linestyle="--", linewidth=1)
            ax.text(
                at,
                0.97,
                what,
                transform=ax.get_xaxis_transform(),
                fontsize=8,
                rotation=90,
                va="top",
                ha="right",
                color="tab:orange",
            )
        ax.set_yscale("log")
        ax.set_ylabel("latency, ms")
        ax.set_title(arch, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    np.atleast_1d(axes)[-1].set_xlabel("send time, s from the start of the run")
    fig.suptitle(f"medical records, scenario '{scenario}': every request's latency")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
