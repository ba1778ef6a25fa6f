"""The training batches as a keras PyDataset: shuffled, augmented, streamed from a table."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from photoz_tools.errors import PzError
from photoz_tools.model.backend import import_keras
from photoz_tools.model.data import IMAGE_BYTES, Selection, augment, balance_weights, iter_images
from photoz_tools.pdf import Bins

keras = import_keras()


class TrainingBatches(keras.utils.PyDataset):
    """Shuffled, augmented training batches streamed from a table (a keras PyDataset).

    Each epoch passes once over the training rows in table order through a shuffle buffer of
    `buffer_rows` galaxies (the whole selection when it fits, then the shuffle is exact).
    Batches are full (`len(self)` = rows // batch_size); the rows left over change each epoch.
    Items are ``({"image", "ebv"}, labels, weights)``.
    """

    def __init__(
        self,
        selection: Selection,
        batch_size: int = 128,
        seed: int = 0,
        augment: bool = True,
        balanced: bool = False,
        image_col: str = "image",
        buffer_rows: int | None = None,
        bins: Bins | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sel = selection
        self.rows = selection.train_rows
        self.batch_size = int(min(batch_size, len(self.rows)))
        self.seed = int(seed)
        self.do_augment = augment
        self.image_col = image_col
        budget = int(os.environ.get("PZ_TRAIN_BUFFER_MB", "1024")) * (1 << 20)
        self.buffer_rows = int(buffer_rows or max(4 * self.batch_size, budget // IMAGE_BYTES))
        self.weights = None
        if balanced:
            n_bins = bins.n if bins is not None else int(selection.labels.max()) + 1
            self.weights = balance_weights(selection.labels[self.rows], n_bins)
            self.n_bins = n_bins
        self.epoch = 0
        self._it: Iterator | None = None
        self._next = 0

    def __len__(self) -> int:
        return max(1, len(self.rows) // self.batch_size)

    def iterate(self, epoch: int, start: int = 0) -> Iterator[tuple[dict, np.ndarray, Any]]:
        """The batches of `epoch`, from batch `start` on (earlier ones are read and skipped)."""
        rng = np.random.default_rng([self.seed, int(epoch), 1])
        bs, n_steps = self.batch_size, len(self)
        cap = min(self.buffer_rows, len(self.rows)) + 1024
        buf = np.empty((cap, 64, 64, 5), dtype=np.float32)
        ids = np.empty(cap, dtype=np.int64)
        fill = 0
        step = 0
        stream = iter_images(self.sel.path, self.rows, self.image_col)
        exhausted = False
        target = min(self.buffer_rows, len(self.rows))
        while step < n_steps:
            while not exhausted and fill < target:
                try:
                    r, im = next(stream)
                except StopIteration:
                    exhausted = True
                    break
                if fill + len(r) > cap:  # grow only if a chunk overshoots the buffer
                    more = fill + len(r) - cap
                    buf = np.concatenate([buf, np.empty((more, 64, 64, 5), np.float32)])
                    ids = np.concatenate([ids, np.empty(more, np.int64)])
                    cap = len(ids)
                buf[fill : fill + len(r)] = im
                ids[fill : fill + len(r)] = r
                fill += len(r)
            if fill < bs:
                break
            pick = rng.choice(fill, size=bs, replace=False)
            images, rows = buf[pick].copy(), ids[pick].copy()
            # fill the holes with the tail of the buffer
            keep = np.setdiff1d(np.arange(fill - bs, fill), pick, assume_unique=True)
            holes = np.sort(pick[pick < fill - bs])
            buf[holes] = buf[keep]
            ids[holes] = ids[keep]
            fill -= bs
            if step >= start:
                yield self._finish(images, rows, epoch, step)
            step += 1

    def _finish(self, images: np.ndarray, rows: np.ndarray, epoch: int, step: int):
        if not np.isfinite(images).all():
            bad = rows[~np.isfinite(images).all(axis=(1, 2, 3))]
            raise PzError(
                f"{self.sel.path}: row {int(bad[0])} (and {len(bad) - 1} more in this "
                "batch) has NaN/inf pixels; drop bad images with pz-pack first"
            )
        if self.do_augment:
            images = augment(images, np.random.default_rng([self.seed, int(epoch), int(step), 2]))
        x = {"image": images, "ebv": self.sel.ebv[rows].reshape(-1, 1)}
        y = self.sel.labels[rows]
        w = None
        if self.weights is not None:
            w = self.weights[(y * len(self.weights)) // self.n_bins]
        return x, y, w

    def __getitem__(self, index: int):
        if self._it is None or index != self._next:
            self._it = self.iterate(self.epoch, start=index)
        self._next = index + 1
        x, y, w = next(self._it)
        return (x, y) if w is None else (x, y, w)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._it = None
        self._next = 0
