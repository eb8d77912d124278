"""The pipeline's own column names, whatever the data called them (textclf.labels maps them)."""

import numpy as np

TEXT, TEXT_PAIR = "text", "text_pair"  # the first and (for sentence pairs) second text
LABEL = "label"  # a ClassLabel: ids with their names
IDX = "idx"  # the row's id: the source's own `idx` column where it has one, else the row number


def label_ids(split) -> np.ndarray:
    """A split's label ids as one numpy array (through Arrow: no Python object per row)."""
    return np.array(split.with_format("arrow")[LABEL].to_numpy(zero_copy_only=False))  # a writable copy
