"""WordNet 3.0's nouns, read from Debian's ``wordnet-base`` files (``data.noun``, ``noun.exc``).

ImageNet's class ids are WordNet 3.0 noun synsets (``n02106662`` = German shepherd), so the
noun hierarchy turns 1,000 leaf classes into the everyday words above them: every leaf's
hypernym closure says which concepts (dog, animal, vehicle …) it belongs to. Used when a
bundle is built, never while tagging.

``data.noun`` lines (``man 5 wndb``): ``offset lex_filenum n w_cnt(hex) word lex_id … p_cnt
ptr… | gloss``, each pointer ``symbol offset pos source/target``. Hypernyms are ``@`` and
instance hypernyms ``@i``. Lines starting with spaces are the licence header.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from autotag.errors import ModelError

WORDNET_DIR = Path("/usr/share/wordnet")
_HYPERNYMS = ("@", "@i")


@dataclass(frozen=True)
class Synset:
    """One noun synset: its id (``n`` + 8-digit offset), lemmas, direct hypernyms, gloss."""

    id: str
    lemmas: tuple[str, ...]
    hypernyms: tuple[str, ...]
    gloss: str


def parse_data_line(line: str) -> Synset | None:
    """One ``data.noun`` line → a Synset; None for header lines."""
    if not line or line[0] == " ":
        return None
    head, _, gloss = line.partition(" | ")
    f = head.split()
    try:
        offset, pos, w_cnt = f[0], f[2], int(f[3], 16)
        words = [f[4 + 2 * i].replace("_", " ") for i in range(w_cnt)]
        at = 4 + 2 * w_cnt
        p_cnt = int(f[at])
        hyper = []
        for i in range(p_cnt):
            symbol, target, tpos = f[at + 1 + 4 * i : at + 4 + 4 * i]
            if symbol in _HYPERNYMS and tpos == "n":
                hyper.append("n" + target)
    except (IndexError, ValueError):
        raise ModelError(f"malformed WordNet data line: {line[:60]!r}") from None
    if pos != "n":
        raise ModelError(f"not a noun synset: {line[:60]!r}")
    # Lemmas of adjectives carry markers like "(p)"; nouns do not, but be safe.
    words = [w.split("(")[0] for w in words]
    return Synset("n" + offset, tuple(words), tuple(hyper), gloss.strip())


class WordNet:
    """The noun synsets of one WordNet database, with hypernym closures and plurals."""

    def __init__(self, synsets: Iterable[Synset], irregular: dict[str, str] | None = None):
        self.synsets = {s.id: s for s in synsets}
        # irregular plural → singular (``mice`` → ``mouse``), from noun.exc
        self.irregular = dict(irregular or {})
        self._closure: dict[str, frozenset[str]] = {}
        self._plurals: dict[str, list[str]] | None = None  # singular → plurals, on first use

    @classmethod
    def load(cls, directory: Path = WORDNET_DIR) -> WordNet:
        """The database in ``directory``, read once per process (82,000 synsets: ~0.6 s) and
        shared: a WordNet is never changed after loading (its memos aside)."""
        data = Path(directory) / "data.noun"
        if not data.is_file():
            raise ModelError(f"WordNet not found: no {data} (apt install wordnet-base)")
        exc = Path(directory) / "noun.exc"
        key = (str(data.resolve()), _stamp(data), _stamp(exc))
        loaded = _LOADED.get(key)
        if loaded is None:
            loaded = _LOADED[key] = cls._read(Path(directory))
        return loaded

    @classmethod
    def _read(cls, directory: Path) -> WordNet:
        data = directory / "data.noun"
        with open(data, encoding="utf-8") as f:
            synsets = [s for s in (parse_data_line(line.rstrip("\n")) for line in f) if s]
        irregular: dict[str, str] = {}
        exc = Path(directory) / "noun.exc"
        if exc.is_file():
            for line in exc.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) >= 2:
                    irregular.setdefault(parts[0].replace("_", " "), parts[1].replace("_", " "))
        return cls(synsets, irregular)

    def __getitem__(self, synset_id: str) -> Synset:
        try:
            return self.synsets[synset_id]
        except KeyError:
            raise ModelError(f"no noun synset {synset_id} in WordNet") from None

    def __contains__(self, synset_id: object) -> bool:
        return synset_id in self.synsets

    def ancestors(self, synset_id: str) -> frozenset[str]:
        """Every synset above ``synset_id`` (hypernyms and instance hypernyms), itself too."""
        done = self._closure.get(synset_id)
        if done is not None:
            return done
        out = {synset_id}
        stack = list(self[synset_id].hypernyms)
        while stack:
            s = stack.pop()
            if s not in out:
                out.add(s)
                stack.extend(self[s].hypernyms)
        result = frozenset(out)
        self._closure[synset_id] = result
        return result

    def plurals_of(self, lemma: str) -> list[str]:
        """Irregular plurals noun.exc records for ``lemma`` (``mouse`` → ``mice``)."""
        if self._plurals is None:
            by_singular: dict[str, list[str]] = {}
            for plural, singular in self.irregular.items():
                by_singular.setdefault(singular, []).append(plural)
            self._plurals = {s: sorted(ps) for s, ps in by_singular.items()}
        return list(self._plurals.get(lemma, ()))


def _stamp(path: Path) -> tuple[int, int] | None:
    """(mtime, size) of a file, None if there is none: a database changed on disk is read anew."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


# WordNet.load's databases: (data.noun's path, its stamp, noun.exc's stamp) -> the WordNet.
_LOADED: dict[tuple[str, tuple[int, int] | None, tuple[int, int] | None], WordNet] = {}
