"""Which language a question or an answer is written in, with py3langid (a registry language identifier).

Used by the language-match metric (is the answer in the question's language?) and by retrieval (is this a
French question whose terms need English equivalents?). The identifier is restricted to a handful of
European languages: on short clinical text an unrestricted model drifts to rare languages (Latin-looking
terms read as Occitan or Galician), while the question here is only ever "French, English, or something else".
"""

from __future__ import annotations

import re
from functools import lru_cache

# Languages the identifier chooses between: the ones medlora writes in plus close neighbours, so a Spanish or
# Italian answer to a French question is reported as a mismatch rather than forced into French or English.
CANDIDATE_LANGUAGES = ("en", "fr", "es", "it", "de", "pt", "nl")
UNKNOWN = "und"
_MIN_LETTERS = 3
_LETTER = re.compile(r"[^\W\d_]")


@lru_cache(maxsize=1)
def _identifier():  # noqa: ANN202 - py3langid has no type hints
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(list(CANDIDATE_LANGUAGES))
    return identifier


def detect_language(text: str) -> str:
    """ISO 639-1 code of ``text`` among :data:`CANDIDATE_LANGUAGES`, or ``"und"`` when it has (almost) no
    letters — an empty or all-numbers answer has no language to match."""
    if len(_LETTER.findall(text or "")) < _MIN_LETTERS:
        return UNKNOWN
    language, _ = _identifier().classify(text)
    return str(language)
