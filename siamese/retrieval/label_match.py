"""Labels given beside the data (LABELS.csv or {key: label}) applied chunk by chunk while indexing,
keeping count of what they did: how many named items, which keys named none, which items lost the
labels their source gave them. A mapping that names no item is almost always a typo; saying so
beats an index that silently carries fewer labels than the user thinks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

SHOWN = 3  # unknown keys named in a report


@dataclass
class LabelMatch:
    """`mapping` applied to ItemSet chunks (`apply`); the tallies describe every chunk seen so far."""

    mapping: Mapping[str, str]
    matched: set[str] = field(default_factory=set)  # keys of the mapping that named an item
    items: int = 0  # items seen
    had_labels: int = 0  # items that carried a label of their own (e.g. their folder)
    lost_labels: int = 0  # ... and are left without one because the mapping does not name them
    example_key: str | None = None  # an item key, to show what keys look like

    @classmethod
    def of(cls, labels) -> LabelMatch | None:
        """A LabelMatch for a LABELS.csv path, a {key: label} mapping or a LabelMatch (None stays None)."""
        if labels is None or isinstance(labels, LabelMatch):
            return labels
        if isinstance(labels, (str, Path)):
            from ..data.loading import read_labels_csv

            labels = read_labels_csv(labels)
        return cls(labels)

    def apply(self, chunk):
        """The chunk with the mapping's labels (items it does not name get None)."""
        named = [k for k in chunk.keys if k in self.mapping]
        self.matched.update(named)
        own = chunk.labels or []
        self.had_labels += sum(label is not None for label in own)
        self.lost_labels += sum(label is not None and key not in self.mapping for key, label in zip(chunk.keys, own))
        self.items += len(chunk)
        if self.example_key is None and len(chunk):
            self.example_key = chunk.keys[0]
        return chunk.with_labels(self.mapping, strict=False)

    @property
    def unknown(self) -> list[str]:
        """Keys of the mapping that named no item seen (in the mapping's order)."""
        return [k for k in self.mapping if k not in self.matched]

    def report(self, name: str = "the labels") -> list[str]:
        """One line on what matched, and one for each surprise (unknown keys, replaced labels)."""
        lines = [f"{name}: {len(self.matched)} of {len(self.mapping)} labels matched items of the data"]
        unknown = self.unknown
        if unknown:
            shown = ", ".join(repr(k) for k in unknown[:SHOWN]) + (", ..." if len(unknown) > SHOWN else "")
            like = f"; item keys look like {self.example_key!r}" if self.example_key is not None else ""
            lines.append(f"{name}: {len(unknown)} key(s) are not items of the data and were ignored ({shown}){like}")
        if self.had_labels:
            lost = f"; {self.lost_labels} of them are now unlabelled" if self.lost_labels else ""
            lines.append(f"{name} replaced the data's own labels ({self.had_labels} items had one{lost})")
        return lines
