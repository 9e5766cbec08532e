"""Train/validation/test split by group (disease focus or source document), seeded.

Splitting by record would put "What causes psoriasis?" in training and "How is psoriasis treated?" in test:
the test would then measure memorised facts about a seen disease. Grouping keeps each disease on one side.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from medlora.data.records import QARecord


def split_by_group(
    records: Sequence[QARecord], validation_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[QARecord]]:
    """Assign whole groups to test, then validation, until each reaches its share of records."""
    groups: dict[str, list[QARecord]] = defaultdict(list)
    for record in records:
        groups[record.split_group()].append(record)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    total = len(records)
    targets = {"test": test_fraction * total, "validation": validation_fraction * total}
    splits: dict[str, list[QARecord]] = {"train": [], "validation": [], "test": []}
    for key in keys:
        members = groups[key]
        for name in ("test", "validation"):
            if len(splits[name]) < targets[name] and len(splits[name]) + len(members) <= targets[name] * 1.5 + 1:
                splits[name].extend(members)
                break
        else:
            splits["train"].extend(members)
    return splits
