"""What the demo prints: a table of a few answers and the summary of the run."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass

from streamdag.demo.load import Answer

__all__ = ["DemoReport"]


@dataclass(frozen=True)
class DemoReport:
    answers: list[Answer]
    seconds: float  # from the first request sent to the last answer

    @property
    def sent(self) -> int:
        return len(self.answers)

    @property
    def answered(self) -> int:
        return sum(1 for a in self.answers if a.error is None)

    @property
    def errors(self) -> int:
        return sum(1 for a in self.answers if a.error is not None)

    @property
    def unanswered(self) -> int:
        return sum(1 for a in self.answers if a.timed_out)

    @property
    def ok(self) -> bool:
        return self.sent > 0 and self.errors == 0

    @property
    def docs_per_s(self) -> float:
        return self.answered / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile of the answered requests' latency, in ms."""
        latencies = sorted(a.latency_ms for a in self.answers if a.error is None)
        if len(latencies) < 2:
            return latencies[0] if latencies else 0.0
        return statistics.quantiles(latencies, n=100, method="inclusive")[round(q) - 1]

    def table(self, rows: int = 8) -> list[str]:
        """A few answers of each route, in document order."""
        answered = [a for a in self.answers if a.error is None]
        picked = [a for a in answered if a.route == "auto"][: rows * 5 // 8]
        picked += [a for a in answered if a.route != "auto"][: rows - len(picked)]
        picked.sort(key=lambda a: a.doc.id)
        codes = [" ".join(a.codes) or "-" for a in picked]
        width = max([len("codes"), *map(len, codes)])
        lines = [
            f"{'document':<9} {'door':<4} {'route':<6} {'risk':>5}  {'codes':<{width}}  "
            f"{'labels':<6}  reason"
        ]
        for a, code in zip(picked, codes, strict=True):
            verdict = "match" if a.codes_match else "differ"
            lines.append(
                f"{a.doc.id:<9} {a.door:<4} {a.route:<6} {a.risk_score:>5.3f}  {code:<{width}}  "
                f"{verdict:<6}  {_clip(a.reason, 70)}".rstrip()
            )
        return lines

    def summary(self) -> list[str]:
        doors = Counter(a.door for a in self.answers)
        lines = [
            f"{self.answered}/{self.sent} documents answered in {self.seconds:.2f} s "
            f"({self.docs_per_s:.0f} docs/s; REST {doors['REST']}, gRPC {doors['gRPC']}), "
            f"latency p50 {self.percentile(50):.0f} ms, p99 {self.percentile(99):.0f} ms, "
            f"errors {self.errors}"
            + (f" ({self.unanswered} unanswered)" if self.unanswered else "")
        ]
        answered = [a for a in self.answers if a.error is None]
        if answered:
            routes = Counter(a.route for a in answered)
            queues = Counter(a.queue for a in answered if a.route == "review")
            auto = [a for a in answered if a.route == "auto"]
            lines.append(
                f"routes: auto {routes['auto']}, review {routes['review']} ("
                + ", ".join(f"{q} {n}" for q, n in sorted(queues.items()))
                + f"); codes match the labels for {sum(a.codes_match for a in answered)}"
                f"/{len(answered)} (auto-coded {sum(a.codes_match for a in auto)}/{len(auto)}), "
                f"risk score for {sum(a.risk_matches for a in answered)}/{len(answered)}"
            )
        failed = [a for a in self.answers if a.error is not None]
        for a in failed[:5]:
            lines.append(f"  {a.doc.id} via {a.door}: {_clip(a.error or '', 160)}")
        if len(failed) > 5:
            lines.append(f"  ... and {len(failed) - 5} more")
        return lines


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
