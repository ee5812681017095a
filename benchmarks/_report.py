"""Tables and the plot of the gRPC vs REST benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _loadgen import TRANSPORTS

__all__ = ["plot", "print_report"]


def print_report(
    cells: list[dict[str, Any]], encodings: list[dict[str, Any]], pipelines: list[dict[str, Any]]
) -> None:
    if cells:
        header = (
            f"{'transport':<11} {'payload':>7} {'conc':>4} {'n':>5} {'req/s':>9}"
            f" {'p50 ms':>9} {'p99 ms':>9}"
        )
        print(header)
        print("-" * len(header))
        for c in cells:
            print(
                f"{c['transport']:<11} {c['payload']:>7} {c['concurrency']:>4} {c['requests']:>5}"
                f" {c['rps']:>9,.1f} {c['p50_ms']:>9.2f} {c['p99_ms']:>9.2f}"
            )
    if encodings:
        print(f"\n{'payload':>7} {'transport':<11} {'request bytes':>13} {'client encode ms':>16}")
        for e in encodings:
            print(
                f"{e['payload']:>7} {e['transport']:<11} {e['request_bytes']:>13,}"
                f" {e['encode_ms']:>16.3f}"
            )
    if pipelines:
        print(
            f"\n{'pipeline (REST, c=1)':<22} {'n':>4} {'p50 ms':>7} {'p99 ms':>7}"
            f" {'mean ms':>8} {'1st reply':>9}"
        )
        for p in pipelines:
            print(
                f"{p['guarantee']:<22} {p['requests']:>4} {p['p50_ms']:>7.1f} {p['p99_ms']:>7.1f}"
                f" {p['mean_ms']:>8.1f} {p['first_reply_s']:>8.1f}s"
            )
        names = pipelines[0]["hops_ms"]["hops"]
        print("\nms per hop, median / p99 (Kafka record timestamps, ms resolution)")
        print(f"{'guarantee':<14}" + "".join(f" {n:>17}" for n in names))
        for p in pipelines:
            hops = p["hops_ms"]
            cells = [
                f"{m:.1f} / {q:.0f}" for m, q in zip(hops["median_ms"], hops["p99_ms"], strict=True)
            ]
            print(f"{p['guarantee']:<14}" + "".join(f" {c:>17}" for c in cells))


def plot(cells: list[dict[str, Any]], path: Path, *, concurrency: int) -> None:
    """Requests/s and p99 latency per payload, one line per transport, at ``concurrency``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [c for c in cells if c["concurrency"] == concurrency]
    payloads = list(dict.fromkeys(c["payload"] for c in chosen))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    for transport, marker in zip(TRANSPORTS, "os^", strict=True):
        rows = {c["payload"]: c for c in chosen if c["transport"] == transport}
        xs = [i for i, p in enumerate(payloads) if p in rows]
        left.plot(xs, [rows[payloads[i]]["rps"] for i in xs], marker=marker, label=transport)
        right.plot(xs, [rows[payloads[i]]["p99_ms"] for i in xs], marker=marker, label=transport)
    for ax, title in ((left, "requests/s (log scale)"), (right, "p99 latency, ms (log scale)")):
        ax.set_yscale("log")
        ax.set_xticks(range(len(payloads)), payloads)
        ax.set_xlabel("FP32 payload per request")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"y = 2x behind streamdag serve, {concurrency} concurrent asyncio callers")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
