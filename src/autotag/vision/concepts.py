"""Everyday concepts over ImageNet's leaves: the reviewed vocabulary and its matrix.

ImageNet-1k's classes are 1,000 fine leaves (120 dog breeds, no "dog"). Within the softmax
head the leaves are exclusive, so the probability of a concept is the sum of its leaves'
probabilities: 0.45 malamute + 0.26 German shepherd is ≥ 0.71 dog. A bundle holds that as
one (concepts × classes) 0/1 matrix, built here from ``concepts.tsv`` (the reviewed list of
words) and WordNet's hypernym closure of each leaf. Also here: the other words a search may
use for each tag (synonyms and plurals), recorded in the bundle for ``autotag search``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autotag.errors import ModelError
from autotag.vision import bundle as bundles
from autotag.vision.bundle import Concept
from autotag.vision.properties import PROPERTY_WORDS
from autotag.vision.wordnet import WordNet

VOCABULARY_FILE = Path(__file__).with_name("concepts.tsv")
_SYNSET_RE = re.compile(r"^-?n\d{8}$")
_COLUMNS = ["tag", "synsets", "words", "threshold", "note"]
# What else a search may type for the face detector's tags.
DETECTOR_WORDS = {
    "person": ["people", "persons", "human", "humans"],
    "face": ["portrait", "portraits"],
}


@dataclass(frozen=True)
class ConceptSpec:
    """One reviewed line of the vocabulary file."""

    tag: str
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    words: tuple[str, ...]
    threshold: float
    note: str = ""


def read_vocabulary(path: Path = VOCABULARY_FILE) -> list[ConceptSpec]:
    """The concept lines of a vocabulary file (``#`` comments and the header skipped)."""
    specs: list[ConceptSpec] = []
    header_seen = False
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cells = line.split("\t")
        if not header_seen:
            if cells[: len(_COLUMNS)] != _COLUMNS:
                raise ModelError(f"{path}:{n}: header must be {_COLUMNS}, not {cells}")
            header_seen = True
            continue
        cells += [""] * (len(_COLUMNS) - len(cells))
        tag, synsets, words, threshold, note = (c.strip() for c in cells[: len(_COLUMNS)])
        ids = synsets.split()
        bad = [s for s in ids if not _SYNSET_RE.match(s)]
        if not tag or not ids or bad:
            raise ModelError(f"{path}:{n}: needs a tag and synset ids like n02084071 ({bad})")
        try:
            thr = float(threshold)
        except ValueError:
            raise ModelError(f"{path}:{n}: threshold {threshold!r} is not a number") from None
        if not 0.0 < thr <= 1.0:
            raise ModelError(f"{path}:{n}: threshold {thr} is outside (0, 1]")
        specs.append(
            ConceptSpec(
                tag=tag,
                include=tuple(s for s in ids if not s.startswith("-")),
                exclude=tuple(s[1:] for s in ids if s.startswith("-")),
                words=tuple(w.strip() for w in words.split(",") if w.strip()),
                threshold=thr,
                note=note,
            )
        )
    tags = [s.tag.lower() for s in specs]
    dup = sorted({t for t in tags if tags.count(t) > 1})
    if dup:
        raise ModelError(f"{path}: concepts listed twice: {dup}")
    return specs


def irregular_plurals(word: str, wordnet: WordNet) -> list[str]:
    """Plurals no suffix rule finds (``mouse`` → ``mice``, ``man`` → ``men``), from WordNet's
    exception list, for the last word of a phrase. Regular plurals (``dogs``, ``buses``,
    ``puppies``) are undone when a search is read, so they are not stored."""
    head, _, last = word.rpartition(" ")
    prefix = head + " " if head else ""
    return [prefix + p for p in wordnet.plurals_of(last) if p != last]


def search_words(names: Sequence[str], wordnet: WordNet) -> list[str]:
    """The names and their irregular plurals, lower-cased and unique, in order."""
    out: list[str] = []
    for name in names:
        out.append(name)
        if "(" not in name:  # "crane (bird)" has no plural of its own
            out.extend(irregular_plurals(name, wordnet))
    return list(dict.fromkeys(w.lower() for w in out))


def build_concepts(
    specs: Sequence[ConceptSpec], leaf_synsets: Sequence[str], wordnet: WordNet
) -> tuple[list[Concept], np.ndarray, np.ndarray]:
    """(concepts, matrix (concepts × leaves) of 0/1, thresholds) for leaves in output order.

    A leaf belongs to a concept when one of its ``include`` synsets is among the leaf's
    hypernyms (or is the leaf) and none of its ``exclude`` synsets is.
    """
    ancestors = [wordnet.ancestors(s) for s in leaf_synsets]
    matrix = np.zeros((len(specs), len(leaf_synsets)), np.float32)
    concepts = []
    for c, spec in enumerate(specs):
        for sid in spec.include + spec.exclude:
            wordnet[sid]  # an unknown id is a ModelError naming it
        for j, anc in enumerate(ancestors):
            if anc.intersection(spec.include) and not anc.intersection(spec.exclude):
                matrix[c, j] = 1.0
        n = int(matrix[c].sum())
        if n == 0:
            raise ModelError(f"concept {spec.tag!r}: no ImageNet leaf under {spec.include}")
        concepts.append(
            Concept(
                tag=spec.tag,
                synsets=[*spec.include, *(f"-{s}" for s in spec.exclude)],
                words=search_words([spec.tag, *spec.words], wordnet),
                leaves=n,
                note=spec.note,
            )
        )
    thresholds = np.array([s.threshold for s in specs], np.float32)
    return concepts, matrix, thresholds


def leaf_words(
    classes: Sequence[str], leaf_synsets: Sequence[str], wordnet: WordNet
) -> dict[str, list[str]]:
    """Each leaf's search words: its WordNet lemmas (``alsatian`` for German shepherd) and
    their plurals, besides the class name itself."""
    out = {}
    for name, sid in zip(classes, leaf_synsets, strict=True):
        words = [w for w in search_words([name, *wordnet[sid].lemmas], wordnet)]
        out[name] = [w for w in words if w != name.lower()]
    return out


def _phrase_words(name: str) -> list[str]:
    """A name's words as search splits them (runs of letters and digits, lower-case)."""
    return re.findall(r"[^\W_]+", name.lower())


def leaf_is(
    classes: Sequence[str], leaf_synsets: Sequence[str], wordnet: WordNet
) -> dict[str, list[str]]:
    """For each leaf whose name has several words: the runs of words inside its name that
    the leaf *is*, by WordNet (a lemma of one of its hypernyms, or of the leaf itself when
    shorter than its name). ``golden retriever`` → [retriever]; ``fox squirrel`` → [] (a
    squirrel, not a fox); ``Irish water spaniel`` → [water spaniel, spaniel]. Search lets a
    typed word find a longer leaf name only through this list."""
    out: dict[str, list[str]] = {}
    for name, sid in zip(classes, leaf_synsets, strict=True):
        words = _phrase_words(name)
        if len(words) < 2:
            continue
        lemmas = set()
        for anc in wordnet.ancestors(sid):
            for lemma in wordnet[anc].lemmas:
                lemmas.add(" ".join(_phrase_words(lemma)))
        runs = [
            " ".join(words[i:j])
            for i in range(len(words))
            for j in range(i + 1, len(words) + 1)
            if j - i < len(words)
        ]
        out[name.lower()] = sorted(dict.fromkeys(r for r in runs if r in lemmas))
    return out


class SearchVocabulary(dict[str, list[str]]):
    """Search word → tags (a plain dict), carrying ``word_of``: tag → the phrases inside
    its name that it is (``leaf_is``), which ``autotag.storage.terms.with_word_matches``
    reads so that ``fox`` does not find fox squirrels."""

    def __init__(self) -> None:
        super().__init__()
        self.word_of: dict[str, frozenset[str]] = {}


def search_vocabulary(manifest: Mapping[str, Any] | None) -> SearchVocabulary:
    """Search word (lower-case) → the tags it names, from a bundle's manifest: every class
    and concept by its own name, its recorded synonyms and irregular plurals; detector and
    property tags too. With no manifest, only the detector and property words."""
    vocab = SearchVocabulary()

    def add(word: str, tag: str) -> None:
        tags = vocab.setdefault(word.lower(), [])
        if tag not in tags:
            tags.append(tag)

    for tag, words in {**DETECTOR_WORDS, **PROPERTY_WORDS}.items():
        for w in [tag, *words]:
            add(w, tag)
    if manifest:
        for name in manifest.get("classes") or []:
            add(str(name), str(name))
        for name, words in (manifest.get("class_words") or {}).items():
            for w in words:
                add(str(w), str(name))
        for c in manifest.get("concepts") or []:
            for w in [c["tag"], *c.get("words", [])]:
                add(str(w), str(c["tag"]))
        for name, phrases in (manifest.get("class_is") or {}).items():
            vocab.word_of[str(name).lower()] = frozenset(str(p).lower() for p in phrases)
    return vocab


def active_search_vocabulary(models_dir: str | Path) -> SearchVocabulary:
    """``search_vocabulary`` of the active bundle; detector and property words only when
    there is no readable active bundle."""
    active = bundles.active_bundle_id(models_dir)
    manifest = None
    if active:
        try:
            manifest = bundles.read_manifest(bundles.bundle_dir(Path(models_dir), active))
        except ModelError:
            manifest = None
    return search_vocabulary(manifest)
