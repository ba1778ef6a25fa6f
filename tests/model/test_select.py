"""Which rows pz-train trains, validates and holds out: the 5-fold protocol of the paper."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from photoz_tools import tables
from photoz_tools.model.data import select_rows
from photoz_tools.pdf import Bins


def test_fold_k_is_the_test_set_and_other_folds_train(tmp_path):
    n = 50
    fold = np.arange(n) % 5
    # pz-pack's single-split protocol marked fold 0 'test' and some rows 'validation'
    split = np.where(fold == 0, "test", np.where(np.arange(n) % 7 == 0, "validation", "train"))
    table = pa.table(
        {
            "id": np.arange(n),
            "z": np.linspace(0.01, 0.3, n),
            "ebv": np.full(n, 0.03, np.float32),
            "fold": fold.astype(np.int16),
            "split": split,
            "image": tables.to_arrow(np.zeros((n, 64, 64, 5), np.float32)),
        }
    )
    path = tmp_path / "ds.parquet"
    tables.write_table(table, path)
    sel = select_rows(str(path), Bins.default(), fold=2)
    held = set(np.flatnonzero(fold == 2))
    used = set(sel.train_rows) | set(sel.val_rows)
    assert not used & held and sel.n_test == len(held)
    # rows of fold 0 that pz-pack called 'test' train when another fold is held out
    assert set(np.flatnonzero(fold == 0)) <= set(sel.train_rows)
    assert set(sel.val_rows) == set(np.flatnonzero((split == "validation") & (fold != 2)))
