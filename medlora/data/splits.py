"""Train/validation/test split by group (disease focus or source document), seeded and stable under growth.

Splitting by record would put "What causes psoriasis?" in training and "How is psoriasis treated?" in test:
the test would then measure memorised facts about a seen disease. Grouping keeps each disease on one side.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence

from medlora.data.records import QARecord


def group_position(key: str, seed: int) -> float:
    """Where a group falls in [0, 1): a seeded hash of its key, independent of every other group."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_by_group(
    records: Sequence[QARecord], validation_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[QARecord]]:
    """Each group goes to test, validation or train by its own seeded hash position.

    Why a hash and not a shuffle: a group's split then never changes when the data grows (a new MedQuAD
    subset, more team-written pairs). A recipe chosen on the validation split of one data version is never
    scored on a test split that holds documents that were validation before. Shares of records follow the
    fractions on average; a split left empty by a tiny data set gets the group closest to its range.
    """
    groups: dict[str, list[QARecord]] = defaultdict(list)
    for record in records:
        groups[record.split_group()].append(record)
    position = {key: group_position(key, seed) for key in groups}
    assignment = {}
    for key, u in position.items():
        assignment[key] = "test" if u < test_fraction else (
            "validation" if u < test_fraction + validation_fraction else "train")
    for name, fraction in (("test", test_fraction), ("validation", validation_fraction)):
        if fraction > 0 and len(groups) >= 3 and name not in assignment.values():
            donors = sorted((k for k, v in assignment.items() if v == "train"), key=position.__getitem__)
            if donors:
                assignment[donors[0]] = name
    splits: dict[str, list[QARecord]] = {"train": [], "validation": [], "test": []}
    for key in sorted(groups, key=position.__getitem__):
        splits[assignment[key]].extend(groups[key])
    return splits
