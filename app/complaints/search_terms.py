"""The words a complaint is found by: one segmentation for the stored text and the query.

Theory of operation
-------------------

Text is normalised (NFKC and case-folded: full-width letters become plain ones, ``ATM`` is
``atm``) and cut into runs of letters and digits; anything else (spaces, punctuation,
symbols) separates words and is never a word itself. A run is then split where Han script
(and kana and hangul, written without spaces too) meets any other:

- a **CJK run** is segmented with jieba in search mode (``cut_for_search``), which gives the
  words and, for a long word, the dictionary words inside it (``信用卡中心`` gives ``信用``,
  ``信用卡``, ``中心`` and itself). Every CJK character is a term of its own as well, so a
  query of one character (``卡``) finds what contains it;
- any **other run** is one word, lower-cased as normalised (``ATM`` and ``atm`` meet); no
  stemming.

``terms`` is what a text is stored as; ``query_terms`` is what a query must all match
(AND): its words as jieba's precise mode cuts them, which is how it cuts the document too
before search mode adds the words inside the long ones. A query therefore needs neither
those inner words (``信用卡`` implies ``信用`` in every document that has it) nor the single
characters: each would be one more posting list to read and, being correlated with the
word, would make the planner's estimate of how many complaints match far too low. A query
word of one character is still looked up, as the single character it is.

``vector`` writes terms as the literal of a PostgreSQL ``tsvector`` and ``tsquery`` a query
as the literal of a ``tsquery``: lexemes quoted, taken as given, no parser and no
dictionary in between (what the ``simple`` configuration would do to them, minus its
re-parsing of words this module has already cut). ``EMPTY`` is the vector of no text: an
anonymised complaint gets it, so no search finds it by what it said.

Decisions, and why
------------------

- **jieba without its HMM.** With the HMM, jieba guesses words it does not know from
  context, so the same characters can be one word in a document and another in a query
  (``盗刷`` alone is one guessed word; in ``被盗刷`` it is not). Without it, an unknown word
  falls apart into dictionary words or characters, which documents index too, so the query
  still matches.
- **Its own tokenizer, with jieba's bundled dictionary only.** The classifier's tokenizer
  carries the desk's domain words, which change with the classifier; if search used it,
  adding a word would change how new queries are cut while stored documents keep the old
  cut. A change to this module's segmentation
  means filling the column again (as the migration that created it does).
- **Segmentation of a CJK run is remembered** (an LRU of ``CACHE_SIZE`` runs): complaints
  repeat their phrases (branch names, stock wording), and bulk loads repeat them a lot.
- **Words are at most ``MAX_WORD`` characters**, longer runs (a pasted token, a long
  number) are cut to that, in documents and queries alike, far inside PostgreSQL's limit on
  a lexeme.

Pure: jieba's dictionary (package data) is read once per process; nothing else does I/O.
"""

from __future__ import annotations

import logging
import re
import unicodedata
import warnings
from collections.abc import Iterable, Sequence
from functools import cache, lru_cache
from typing import Any, Final, Protocol

MAX_WORD: Final = 64
CACHE_SIZE: Final = 100_000
EMPTY: Final = ""
"""The ``tsvector`` literal of no text."""

_CJK: Final = (
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # Han, its extension A, compatibility ideographs
    "\uac00-\ud7af"  # hangul syllables
    "\U00020000-\U0003134f"  # Han extensions B to G
)
_RUN = re.compile(r"[^\W_]+")
_PIECE = re.compile(f"([{_CJK}]+)|([^{_CJK}]+)")


@cache
def _segmenter() -> Any:
    """jieba's tokenizer on its bundled dictionary, initialised once, quietly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import jieba  # type: ignore[import-untyped]

        jieba.setLogLevel(logging.WARNING)
        segmenter = jieba.Tokenizer()
        segmenter.initialize()
    return segmenter


def warm() -> None:
    """Read jieba's dictionary now (about a second), not in the first request that needs it."""
    _segmenter()


@lru_cache(maxsize=CACHE_SIZE)
def _cjk_words(run: str, *, search_mode: bool) -> tuple[str, ...]:
    """jieba's words of a run of CJK characters: in search mode, with the dictionary words
    inside the long ones too."""
    cut = _segmenter().cut_for_search if search_mode else _segmenter().cut
    return tuple(w for w in cut(run, HMM=False) if w)


def _pieces(text: str) -> Iterable[tuple[bool, str]]:
    """(is CJK, piece) for every run of letters and digits, split where the script changes."""
    normal = unicodedata.normalize("NFKC", text).casefold()
    for run in _RUN.findall(normal):
        for cjk, other in _PIECE.findall(run):
            yield (True, cjk) if cjk else (False, other)


def _words(texts: Iterable[str], *, stored: bool) -> list[str]:
    found: dict[str, None] = {}
    for text in texts:
        for cjk, piece in _pieces(text):
            if not cjk:
                found[piece[:MAX_WORD]] = None
                continue
            words = _cjk_words(piece, search_mode=stored)
            found.update(dict.fromkeys(w[:MAX_WORD] for w in words))
            if stored:
                found.update(dict.fromkeys(piece))
    return list(found)


def terms(*texts: str) -> list[str]:
    """The distinct terms the texts are stored as: words, and every CJK character."""
    return _words(texts, stored=True)


def query_terms(text: str) -> list[str]:
    """The distinct terms a query must all match (its words, cut as documents are)."""
    return _words([text], stored=False)


def _quoted(term: str) -> str:
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


def vector(found: Iterable[str]) -> str:
    """Terms as a ``tsvector`` literal (``EMPTY`` for none)."""
    return " ".join(_quoted(t) for t in found)


def tsquery(found: Iterable[str]) -> str:
    """Terms as a ``tsquery`` literal that matches a vector holding all of them."""
    return " & ".join(_quoted(t) for t in found)


def _linked_texts(linked: Iterable[dict[str, Any]]) -> list[str]:
    found: list[str] = []
    for facts in linked:
        matter = facts.get("matter") or {}
        parts = [matter.get(k) for k in ("description", "location", "branch")]
        parts += [facts.get("grounds"), facts.get("request")]
        found += [p for p in parts if isinstance(p, str)]
    return found


class Searchable(Protocol):
    """What a complaint is found by (a ``Complaint``, or a row of the same columns)."""

    @property
    def reference(self) -> str: ...
    @property
    def branch(self) -> str: ...
    @property
    def location(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def grounds(self) -> str: ...
    @property
    def request(self) -> str: ...
    @property
    def linked(self) -> Sequence[dict[str, Any]]: ...


def of(complaint: Searchable) -> str:
    """A complaint's ``tsvector`` literal: its reference, branch and matter as registered,
    and the facts of every registration linked to it (``linked``)."""
    texts = [complaint.reference, complaint.branch, complaint.location, complaint.description]
    texts += [complaint.grounds, complaint.request, *_linked_texts(complaint.linked or ())]
    return vector(terms(*texts))
