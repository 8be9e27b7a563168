"""Test data whose columns single out no factory (the key holder's per-column support check).

The built-in consortium is realistic: clinker is non-zero at the cement plant only, coal at two plant kinds
of the first five, and each ``plant_kind`` level is one plant's. In a study or a signed round the key holder
now refuses such aggregates (``hefed.stats._support``), so tests about something else (masks, drop-outs,
studies, signatures) use these copies, in which every numeric column is non-zero at every plant.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Columns of the built-in data that are zero at some plants.
SPARSE_COLUMNS = ("coal_t", "clinker_t")


def filled(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Copies of ``frames`` in which a column all zero at a plant gets small positive readings (0.5, 0.75, …, on
    every encoding's grid), so no column is non-zero at fewer plants than there are plants."""
    out = {}
    for name, frame in frames.items():
        frame = frame.copy()
        for column in SPARSE_COLUMNS:
            if column in frame and (frame[column] == 0).all():
                frame[column] = 0.5 + (np.arange(len(frame)) % 7) * 0.25
        out[name] = frame
    return out
