"""What a typed search means: its terms, and which stored tags each term names.

``autotag search dog beach`` is two terms, both required; ``golden retriever`` is one (a
known phrase). A term names tags through a vocabulary of search words (the bundle's tag
names, WordNet synonyms, irregular plurals: ``automobile`` → car, ``mice`` → mouse), and a
regular plural is undone first (``dogs`` → dog, ``buses`` → bus, ``puppies`` → puppy).
Pure logic over plain values: the caller builds the vocabulary
(``autotag.vision.concepts.search_vocabulary``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

# WordNet's noun suffix rules (morphy), tried in order.
_SUFFIXES = (
    ("ses", "s"),
    ("xes", "x"),
    ("zes", "z"),
    ("ches", "ch"),
    ("shes", "sh"),
    ("men", "man"),
    ("ies", "y"),
    ("s", ""),
)
MAX_PHRASE_WORDS = 4
# How a tag was reached, best first (the search ranks photos by it).
MATCHES = ("exact", "plural", "synonym", "word")


def singulars(word: str) -> list[str]:
    """Candidate singulars of a (possibly plural) noun: ``buses`` → ``buse``, ``bus``."""
    out = []
    for suffix, repl in _SUFFIXES:
        if word.endswith(suffix) and len(word) > len(suffix) + 1 and not word.endswith("ss"):
            out.append(word[: -len(suffix)] + repl)
    return out


@dataclass(frozen=True)
class Term:
    """One required part of a search: the text typed, and the tags it names with how."""

    text: str
    tags: dict[str, str] = field(default_factory=dict)  # tag (lower-case) -> match


def _lookup(phrase: str, vocabulary: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Tags the phrase names: as typed, then with its last word made singular."""
    head, _, last = phrase.rpartition(" ")
    prefix = head + " " if head else ""
    found: dict[str, str] = {}
    forms = [(phrase, False)] + [(prefix + s, True) for s in singulars(last)]
    for form, plural in forms:
        for tag in vocabulary.get(form, ()):
            low = tag.lower()
            how = ("plural" if plural else "exact") if low == form else "synonym"
            if low not in found or MATCHES.index(how) < MATCHES.index(found[low]):
                found[low] = how
    return found


def parse_query(query: str, vocabulary: Mapping[str, Sequence[str]] | None = None) -> list[Term]:
    """The terms of a query. Without a vocabulary the whole query is one term (matched by
    tag name and by the words of multi-word tags); with one, the longest known phrases are
    read first and every other word is a term of its own."""
    text = " ".join(query.lower().split())
    if not text:
        return []
    if vocabulary is None:
        return [Term(text)]
    words = text.split(" ")
    terms = []
    i = 0
    while i < len(words):
        for n in range(min(MAX_PHRASE_WORDS, len(words) - i), 0, -1):
            phrase = " ".join(words[i : i + n])
            tags = _lookup(phrase, vocabulary)
            if tags or n == 1:
                terms.append(Term(phrase, tags))
                i += n
                break
    return terms


def tag_words(tag: str) -> frozenset[str]:
    """A tag's words, split as Postgres' ``tags_words_idx`` splits them (runs of letters and
    digits, lower-case)."""
    return frozenset(re.findall(r"[^\W_]+", tag.lower()))


def _forms(text: str) -> list[str]:
    """A typed phrase as typed and with its last word made singular."""
    head, _, last = text.rpartition(" ")
    prefix = head + " " if head else ""
    return [text, *(prefix + s for s in singulars(last))]


def with_word_matches(
    terms: Sequence[Term],
    known_tags: Sequence[str],
    word_of: Mapping[str, Collection[str]] | None = None,
) -> list[Term]:
    """Each term also naming the known tags that contain all its words ("retriever" names
    "golden retriever"), as ``word`` matches, so a search needs only whole-tag lookups.

    ``word_of`` (tag, lower-case → the phrases inside its name that it *is*: the vocabulary
    computes it from WordNet's hypernyms) restricts the tags it lists: "fox" is inside "fox
    squirrel" but a fox squirrel is no fox, so ``word_of["fox squirrel"]`` lacks it and the
    word does not find it; ``word_of["golden retriever"]`` has "retriever". Tags it does
    not list (trained or taught tags) match by their words alone."""
    rules = word_of or {}
    out = []
    for term in terms:
        forms = _forms(term.text)
        form_words = [(f, tag_words(f)) for f in forms]
        found = dict(term.tags)
        if any(w for _, w in form_words):
            for tag in known_tags:
                low = tag.lower()
                if low in found or low == term.text:
                    continue
                have = tag_words(low)
                allowed = rules.get(low)
                if any(
                    w and w <= have and (allowed is None or f in allowed) for f, w in form_words
                ):
                    found[low] = "word"
        out.append(Term(term.text, found))
    return out
