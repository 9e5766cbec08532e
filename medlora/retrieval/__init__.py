"""Retrieval of citable passages: the index (:mod:`.index`) and the default corpus with held-out masks
(:mod:`.corpus`), shared by the bot, evaluation and grounded training."""

from medlora.retrieval.corpus import (
    configured_index,
    default_index,
    document_key,
    held_out_documents,
    leakage_filter,
    load_or_build_default_index,
    sources_from_records,
)
from medlora.retrieval.index import Retrieved, Source, SourceFilter, SourceIndex

__all__ = ["configured_index", "Retrieved", "Source", "SourceFilter", "SourceIndex", "default_index", "document_key",
           "held_out_documents", "leakage_filter", "load_or_build_default_index", "sources_from_records"]
