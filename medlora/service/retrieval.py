"""Moved to :mod:`medlora.retrieval`; kept as an alias while callers move."""

from medlora.retrieval import *  # noqa: F403
from medlora.retrieval import Retrieved, Source, SourceIndex, load_or_build_default_index, sources_from_records  # noqa: F401
