"""The specialties medlora knows, one folder each: adding a specialty is adding a folder here.

A folder ``medlora/specialties/<name>/`` holds everything about one specialty:

- ``specialty.yaml`` — the manifest: ``label`` (the name shown to people), ``language`` (ISO 639-1, default
  ``en``) and, optionally, ``hpo_root``: the Human Phenotype Ontology term whose subtree counts as the
  specialty's vocabulary in the terminology metrics (dermatology: HP:0001574, *Abnormality of the integument*);
- ``terms.txt`` — the term list that selects the specialty's records from general corpora (MedQuAD, abstracts,
  hub datasets) and teaches the router;
- ``lexicon.txt`` — optional: a curated clinical vocabulary for the terminology metrics and the router;
- ``qa.jsonl`` and ``qa.meta.json`` — optional: the team-written QA set (plain ``{"input", "output"}``
  records) and its sidecar (language, review date, licence, disclaimer).

A folder named ``<specialty>-<lang>`` (``dermatology-fr``) is a language variant of ``<specialty>``: its own
manifest, lexicon and QA set, and its specialty's ``terms.txt`` unless it has one.

The folders are found by scanning (:func:`specialties`); nothing else in the package lists specialties.
"""

from medlora.specialties.registry import (
    DEFAULT_LANGUAGE,
    SUPPORTED_LANGUAGES,
    Specialty,
    available_specialties,
    builtin_set_metadata,
    builtin_sets,
    english_builtin_specialties,
    language_variants,
    read_term_file,
    specialties,
    split_variant,
    variant_name,
)

__all__ = [
    "DEFAULT_LANGUAGE",
    "SUPPORTED_LANGUAGES",
    "Specialty",
    "available_specialties",
    "builtin_set_metadata",
    "builtin_sets",
    "english_builtin_specialties",
    "language_variants",
    "read_term_file",
    "specialties",
    "split_variant",
    "variant_name",
]
