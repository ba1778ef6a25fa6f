"""The data pz-score reduces a predictions table to, shared by scoring and plots.

It lives below both so that neither imports the other for it (plots must not import scoring,
which draws with plots): O(N) float columns per estimator, never PDFs.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from photoz_tools import pdf as P

__all__ = ["Estimator", "ScoreData", "Warn", "default_warn", "count", "has"]

Warn = Callable[[str], None]


def default_warn(message: str) -> None:
    """Outside the CLI a notice is a Python warning (the CLI passes its stderr printer),
    attributed to the first caller outside the package, i.e. the user's own line."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, stacklevel=level)


def count(n: Any, noun: str) -> str:
    """'1 row', '3 rows': every drop is said with its count."""
    n = int(n)
    return f"{n} {noun}{'' if n == 1 else 's'}"


def has(n: Any) -> str:
    return "has" if int(n) == 1 else "have"


@dataclass
class Estimator:
    """One photo-z estimator's per-row results, aligned with ScoreData.zspec."""

    name: str
    pdf_column: str | None = None
    width_column: str | None = None
    from_pdf: bool = False  # zphot computed from the PDF (no zphot column)
    zphot: np.ndarray = field(default_factory=lambda: np.empty(0))
    pit: np.ndarray | None = None
    crps: np.ndarray | None = None
    width68: np.ndarray | None = None
    # rows whose PDF is unusable (NaN, inf or negative bins, or a zero sum): not scored at all,
    # so that N, CRPS and PIT always describe the same galaxies
    pdf_bad: np.ndarray | None = None

    @property
    def has_pdf(self) -> bool:
        return self.pit is not None

    @property
    def valid(self) -> np.ndarray:
        """Rows it is scored on: a finite photo-z and, where it has PDFs, a usable one."""
        ok = np.isfinite(self.zphot)
        if self.pdf_bad is not None:
            ok &= ~self.pdf_bad
        return ok


@dataclass
class ScoreData:
    """Everything scoring needs, O(N) floats: truth, estimators, --by values, --group labels.

    `dropped` counts the rows left out of the whole table before scoring, by reason
    (duplicate ids, no truth match, NaN or impossible truth), so that nothing is lost unsaid.
    """

    source: str
    truth: str
    zspec: np.ndarray
    estimators: list[Estimator]
    bins: P.Bins
    by: np.ndarray | None = None
    by_name: str | None = None
    group: np.ndarray | None = None
    group_name: str | None = None
    notes: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)

    def subset(self, keep: np.ndarray) -> None:
        """Keep only the rows of `keep` in every per-row array."""
        self.zspec = self.zspec[keep]
        if self.by is not None:
            self.by = self.by[keep]
        if self.group is not None:
            self.group = self.group[keep]
        for est in self.estimators:
            est.zphot = est.zphot[keep]
            for attr in ("pit", "crps", "width68", "pdf_bad"):
                v = getattr(est, attr)
                if v is not None:
                    setattr(est, attr, v[keep])
