"""The pipeline's own column names, whatever the data called them (textclf.labels maps them)."""

import unicodedata

import numpy as np

TEXT, TEXT_PAIR = "text", "text_pair"  # the first and (for sentence pairs) second text
LABEL = "label"  # a ClassLabel: ids with their names
IDX = "idx"  # the row's id: the source's own `idx` column where it has one, else the row number


# A text with nothing but these is empty to the model: whitespace, separators, and control and format
# characters (a zero-width space), which BERT-style tokenizers drop. The regex is for Arrow (RE2).
BLANK_CATEGORIES = ("Zs", "Zl", "Zp", "Cc", "Cf")
BLANK_REGEX = r"^[\s\p{Z}\p{Cc}\p{Cf}]*$"


def is_blank(text: str) -> bool:
    """BLANK_REGEX for one Python string."""
    return all(ch.isspace() or unicodedata.category(ch) in BLANK_CATEGORIES for ch in text)


def label_ids(split) -> np.ndarray:
    """A split's label ids as one numpy array (through Arrow: no Python object per row)."""
    return np.array(split.with_format("arrow")[LABEL].to_numpy(zero_copy_only=False))  # a writable copy


def label_counts(data) -> dict[str, dict[str, int]]:
    """Rows per label name in every labeled split."""
    found = {}
    for split, ds in data.items():
        if LABEL in ds.column_names:
            names = ds.features[LABEL].names
            ids = np.bincount(label_ids(ds), minlength=len(names))
            found[split] = {n: int(c) for n, c in zip(names, ids, strict=True)}
    return found
