"""What encoding found that training never saw: values per column encoded as unknown, and rows an encoder could
not read (reported as warnings, or an error when strict)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Unseen:
    """Values an encoder did not see in training, counted per column (reported, or an error when strict)."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    # Rows (0-based) an encoder could not read and the config allows skipping (an unreadable image), per column.
    skipped: dict[str, list[int]] = field(default_factory=dict)
    reasons: dict[str, list[str]] = field(default_factory=dict)

    def add(self, column: str, count: int, examples: list[str]) -> None:
        if count:
            self.counts[column] = self.counts.get(column, 0) + count
            self.examples.setdefault(column, []).extend(examples[: 3 - len(self.examples.get(column, []))])

    def skip(self, column: str, rows: list[int], reasons: list[str]) -> None:
        self.skipped.setdefault(column, []).extend(rows)
        self.reasons.setdefault(column, []).extend(reasons)

    def messages(self) -> list[str]:
        return [
            f"column {name!r}: {count} value(s) not seen in training, e.g. {self.examples[name]}; "
            "encoded as unknown"
            for name, count in self.counts.items()
        ] + [
            f"column {name!r}: skipped {len(rows)} row(s) that cannot be read: " + "; ".join(self.reasons[name][:3])
            + (" ..." if len(rows) > 3 else "")
            for name, rows in self.skipped.items()
        ]
