"""Model bundles: every tag's linear classifier in one matrix, verified before use.

A bundle is a directory ``models/bundles/<id>/`` holding ``manifest.json`` and
``weights.npz`` (format in ARCHITECTURE.md). Scoring is one matrix product ``Z = X Wᵀ − b``
(Flickr's ``W·x − b`` form) followed by each head group's activation: a softmax over the
group's columns, or a calibrated sigmoid ``σ(a·z + c)`` per column. Every file's sha256 is in
the manifest and checked on load, and the arrays are read with ``allow_pickle=False``: a
bundle is data, never code.

A bundle may also carry *concepts* (dog, animal, …): each the sum of some softmax classes'
probabilities, one more matrix product (``autotag.vision.concepts`` builds them). They are
stored, validated, scored and merged with the rest of the bundle, which is why this one
module runs past 500 lines.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from autotag.checksums import file_sha256
from autotag.errors import ModelError

FORMAT = "autotag-bundle/1"
WEIGHTS_FILE = "weights.npz"
MANIFEST_FILE = "manifest.json"
ACTIVE_FILE = "ACTIVE"
ACTIVATIONS = ("softmax", "sigmoid")
INPUTS = ("raw", "l2")
# The head group of tags learned from a person's labels (learning.learner): their tags are of
# kind "learned".
LEARNED_GROUP = "learned"
ARRAYS = ("W", "b", "thresholds", "calib_a", "calib_c")
# A softmax over many classes spreads probability thin; 0.15 keeps the one or two classes
# the network clearly prefers and drops the long tail. Sigmoid heads are calibrated, so 0.5.
DEFAULT_SOFTMAX_THRESHOLD = 0.15
DEFAULT_SIGMOID_THRESHOLD = 0.5
# Optional arrays of weights.npz, present when the bundle has concepts.
CONCEPT_ARRAYS = ("concept_matrix", "concept_thresholds")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


@dataclass(frozen=True)
class HeadGroup:
    """A group of classes sharing an activation: columns ``start:stop`` of W."""

    group: str
    activation: str
    start: int
    stop: int
    source: str = ""
    # What the group's rows read: the feature vector as extracted ("raw"), or L2-normalized
    # ("l2": the form stored in photo_vectors, which heads learned from stored vectors use).
    input: str = "raw"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Concept:
    """An everyday word scored as the sum of some classes' softmax probabilities: row
    ``i`` of ``concept_matrix`` marks its classes (``autotag.vision.concepts`` builds it)."""

    tag: str
    synsets: list[str]  # WordNet ids; "-n…" = excluded again
    words: list[str]  # what a search may type for it: synonyms and plurals
    leaves: int  # how many classes it sums
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def new_bundle_id(name: str, when: datetime | None = None) -> str:
    """``<name>-<YYYYmmdd-HHMMSS>`` (UTC)."""
    when = when or datetime.now(UTC)
    return f"{name}-{when:%Y%m%d-%H%M%S}"


def check_bundle_id(bundle_id: str) -> str:
    """Ids become directory names: letters, digits, ``. _ + -`` only, no path tricks."""
    if not isinstance(bundle_id, str) or not _ID_RE.match(bundle_id) or ".." in bundle_id:
        raise ModelError(f"invalid bundle id {bundle_id!r} (letters, digits, . _ + - only)")
    return bundle_id


def safe_bundle_name(text: str) -> str:
    """Free text (a dataset name, ``--name``) made usable as a bundle name and id prefix."""
    out = "".join(ch if ch.isalnum() or ch in "._+-" else "-" for ch in text).strip("-._+")
    return (out or "model")[:80]


def calibrated_sigmoid(
    z: np.ndarray, a: float | np.floating | np.ndarray, c: float | np.floating | np.ndarray
) -> np.ndarray:
    """``σ(a·z + c)`` in float32, written with tanh so it never overflows.

    The one definition: training chooses thresholds on exactly these values, so a threshold
    falls on the same side of every score as in the bolt.
    """
    t = np.asarray(a, np.float32) * np.asarray(z, np.float32) + np.asarray(c, np.float32)
    return 0.5 * (1.0 + np.tanh(0.5 * t))


def bundles_root(models_dir: Path) -> Path:
    return Path(models_dir) / "bundles"


def bundle_dir(models_dir: Path, bundle_id: str) -> Path:
    return bundles_root(models_dir) / check_bundle_id(bundle_id)


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ModelBundle:
    """A loaded, verified bundle: classes, heads and the stacked weights."""

    id: str
    name: str
    version: str
    created: str
    feature_set: dict[str, Any]
    classes: list[str]
    heads: list[HeadGroup]
    W: np.ndarray
    b: np.ndarray
    thresholds: np.ndarray
    calib_a: np.ndarray
    calib_c: np.ndarray
    detectors: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    dataset: Any = None
    provenance: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    concepts: list[Concept] = field(default_factory=list)
    concept_matrix: np.ndarray | None = None  # (len(concepts), k) of 0/1
    concept_thresholds: np.ndarray | None = None  # (len(concepts),)
    class_words: dict[str, list[str]] = field(default_factory=dict)  # class -> search words
    # class -> the words inside its name that it IS (WordNet hypernyms: golden retriever ->
    # retriever; fox squirrel -> nothing): what a typed word may find it by (search terms)
    class_is: dict[str, list[str]] = field(default_factory=dict)

    # --- construction -------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        *,
        name: str,
        feature_set: dict[str, Any],
        classes: list[str],
        heads: list[HeadGroup],
        W: np.ndarray,
        b: np.ndarray,
        thresholds: np.ndarray | None = None,
        calib_a: np.ndarray | None = None,
        calib_c: np.ndarray | None = None,
        detectors: list[str] | None = None,
        metrics: dict[str, Any] | None = None,
        dataset: Any = None,
        provenance: dict[str, Any] | None = None,
        id: str | None = None,
        version: str = "1",
        created: str | None = None,
        concepts: list[Concept] | None = None,
        concept_matrix: np.ndarray | None = None,
        concept_thresholds: np.ndarray | None = None,
        class_words: dict[str, list[str]] | None = None,
        class_is: dict[str, list[str]] | None = None,
    ) -> ModelBundle:
        """A new bundle; thresholds default per activation, calibration to identity."""
        k = len(classes)
        if thresholds is None:
            thresholds = np.empty(k, np.float32)
            for h in heads:
                thresholds[h.start : h.stop] = (
                    DEFAULT_SOFTMAX_THRESHOLD
                    if h.activation == "softmax"
                    else DEFAULT_SIGMOID_THRESHOLD
                )
        bundle = cls(
            id=check_bundle_id(id or new_bundle_id(name)),
            name=name,
            version=str(version),
            created=created or _now_iso(),
            feature_set=dict(feature_set),
            classes=list(classes),
            heads=list(heads),
            W=np.asarray(W, np.float32),
            b=np.asarray(b, np.float32),
            thresholds=np.asarray(thresholds, np.float32),
            calib_a=np.ones(k, np.float32) if calib_a is None else np.asarray(calib_a, np.float32),
            calib_c=np.zeros(k, np.float32) if calib_c is None else np.asarray(calib_c, np.float32),
            detectors=list(detectors or []),
            metrics=dict(metrics or {}),
            dataset=dataset,
            provenance=dict(provenance or {}),
            concepts=list(concepts or []),
            concept_matrix=None
            if concept_matrix is None
            else np.asarray(concept_matrix, np.float32),
            concept_thresholds=None
            if concept_thresholds is None
            else np.asarray(concept_thresholds, np.float32),
            class_words=dict(class_words or {}),
            class_is=dict(class_is or {}),
        )
        bundle.validate()
        return bundle

    def validate(self) -> None:
        """Shapes, head layout and names must agree; raise ModelError saying what doesn't."""
        who = f"bundle {self.id}"
        k = len(self.classes)
        d = int(self.feature_set.get("dim", -1))
        if not {"name", "version", "dim"} <= set(self.feature_set):
            raise ModelError(f"{who}: feature_set needs name, version and dim")
        if self.W.shape != (k, d):
            raise ModelError(f"{who}: W is {self.W.shape}, expected ({k}, {d})")
        for arr in ARRAYS[1:]:
            if getattr(self, arr).shape != (k,):
                raise ModelError(f"{who}: {arr} is {getattr(self, arr).shape}, expected ({k},)")
        for arr in ARRAYS:
            if not np.all(np.isfinite(getattr(self, arr))):
                raise ModelError(f"{who}: {arr} holds NaN or infinite values")
        if len(set(self.classes)) != k:
            dup = sorted({c for c in self.classes if self.classes.count(c) > 1})
            raise ModelError(f"{who}: duplicate class names {dup[:5]}")
        pos = 0
        groups = set()
        for h in self.heads:
            if h.activation not in ACTIVATIONS:
                raise ModelError(f"{who}: head {h.group} has unknown activation {h.activation!r}")
            if h.input not in INPUTS:
                raise ModelError(f"{who}: head {h.group} has unknown input {h.input!r}")
            if h.start != pos or h.stop <= h.start:
                raise ModelError(f"{who}: heads must tile the classes in order (at {h.group})")
            if h.group in groups:
                raise ModelError(f"{who}: head group {h.group!r} appears twice")
            groups.add(h.group)
            pos = h.stop
        if pos != k:
            raise ModelError(f"{who}: heads cover {pos} classes, bundle has {k}")
        self._validate_concepts()

    def _validate_concepts(self) -> None:
        """Concepts sum softmax probabilities only: a sigmoid class's columns must be 0."""
        who = f"bundle {self.id}"
        n = len(self.concepts)
        if n == 0:
            if self.concept_matrix is not None and self.concept_matrix.size:
                raise ModelError(f"{who}: concept_matrix without concepts")
            return
        M, thr = self.concept_matrix, self.concept_thresholds
        if M is None or M.shape != (n, self.k):
            shape = None if M is None else M.shape
            raise ModelError(f"{who}: concept_matrix is {shape}, expected ({n}, {self.k})")
        if thr is None or thr.shape != (n,) or not np.all(np.isfinite(thr)):
            raise ModelError(f"{who}: concept_thresholds must be {n} finite numbers")
        if not np.all((M == 0) | (M == 1)):
            raise ModelError(f"{who}: concept_matrix must hold only 0 and 1")
        for h in self.heads:
            if h.activation != "softmax" and M[:, h.start : h.stop].any():
                raise ModelError(f"{who}: concepts may only sum softmax classes ({h.group})")
        tags = [c.tag for c in self.concepts]
        if len(set(tags)) != n:
            raise ModelError(f"{who}: concept tags repeat")
        clash = sorted(set(tags) & set(self.classes))
        if clash:
            raise ModelError(f"{who}: concepts named like classes: {clash[:5]}")

    # --- files --------------------------------------------------------------------------

    def manifest(self, files: dict[str, str] | None = None) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "created": self.created,
            "feature_set": self.feature_set,
            "classes": self.classes,
            "heads": [h.to_json() for h in self.heads],
            "detectors": self.detectors,
            "concepts": [c.to_json() for c in self.concepts],
            "class_words": self.class_words,
            "class_is": self.class_is,
            "files": files or {},
            "metrics": self.metrics,
            "dataset": self.dataset,
            "provenance": self.provenance,
        }

    def save(self, directory: str | Path, attachments: dict[str, Path] | None = None) -> Path:
        """Write the bundle into ``directory`` (created or replaced whole, atomically).

        ``attachments`` (file name → source path) are copied in and get a sha256 in the
        manifest like the weights: a network feature set ships its ONNX graph this way.
        """
        self.validate()
        target = Path(directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            with open(tmp / WEIGHTS_FILE, "wb") as f:
                arrays = ARRAYS + (CONCEPT_ARRAYS if self.concepts else ())
                np.savez(f, **{a: getattr(self, a) for a in arrays})
            files = {WEIGHTS_FILE: file_sha256(tmp / WEIGHTS_FILE)}
            for fname, source in (attachments or {}).items():
                if fname in (WEIGHTS_FILE, MANIFEST_FILE) or "/" in fname or fname.startswith("."):
                    raise ModelError(f"bundle {self.id}: bad attachment name {fname!r}")
                shutil.copyfile(source, tmp / fname)
                files[fname] = file_sha256(tmp / fname)
            text = json.dumps(self.manifest(files), indent=2, ensure_ascii=False)
            (tmp / MANIFEST_FILE).write_text(text + "\n", encoding="utf-8")
            tmp.chmod(0o755)
            if target.exists():
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        self.path = target
        return target

    def install(self, models_dir: str | Path, attachments: dict[str, Path] | None = None) -> Path:
        """Save under ``<models_dir>/bundles/<id>/``."""
        return self.save(bundle_dir(Path(models_dir), self.id), attachments)

    @classmethod
    def load(cls, path: str | Path) -> ModelBundle:
        """Load and verify a bundle directory; any mismatch is a ModelError."""
        path = Path(path)
        manifest = read_manifest(path)
        who = f"bundle {manifest.get('id', path.name)}"
        if manifest.get("format") != FORMAT:
            raise ModelError(f"{who}: format {manifest.get('format')!r}, expected {FORMAT}")
        files = manifest.get("files") or {}
        if WEIGHTS_FILE not in files:
            raise ModelError(f"{who}: manifest lists no checksum for {WEIGHTS_FILE}")
        for fname, digest in files.items():
            if "/" in fname or "\\" in fname or fname.startswith("."):
                raise ModelError(f"{who}: bad file name {fname!r} in manifest")
            fpath = path / fname
            if not fpath.is_file():
                raise ModelError(f"{who}: {fname} is missing")
            if file_sha256(fpath) != digest:
                raise ModelError(f"{who}: {fname} fails its sha256 check (corrupt or altered)")
        names = ARRAYS + (CONCEPT_ARRAYS if manifest.get("concepts") else ())
        try:
            with np.load(path / WEIGHTS_FILE, allow_pickle=False) as npz:
                arrays = {a: np.asarray(npz[a], np.float32) for a in names}
        except KeyError as exc:
            raise ModelError(f"{who}: {WEIGHTS_FILE} lacks array {exc}") from None
        except (ValueError, OSError) as exc:
            raise ModelError(f"{who}: cannot read {WEIGHTS_FILE}: {exc}") from None
        try:
            heads = [HeadGroup(**h) for h in manifest["heads"]]
            bundle = cls(
                id=check_bundle_id(manifest["id"]),
                name=str(manifest["name"]),
                version=str(manifest.get("version", "1")),
                created=str(manifest.get("created", "")),
                feature_set=dict(manifest["feature_set"]),
                classes=[str(c) for c in manifest["classes"]],
                heads=heads,
                detectors=list(manifest.get("detectors") or []),
                metrics=dict(manifest.get("metrics") or {}),
                dataset=manifest.get("dataset"),
                provenance=dict(manifest.get("provenance") or {}),
                path=path,
                concepts=[Concept(**c) for c in manifest.get("concepts") or []],
                class_words={
                    str(k): [str(w) for w in v]
                    for k, v in (manifest.get("class_words") or {}).items()
                },
                class_is={
                    str(k): [str(w) for w in v] for k, v in (manifest.get("class_is") or {}).items()
                },
                **arrays,
            )
        except (KeyError, TypeError) as exc:
            raise ModelError(f"{who}: manifest.json is missing or has a bad field: {exc}") from None
        bundle.validate()
        return bundle

    # --- scoring ------------------------------------------------------------------------

    @property
    def k(self) -> int:
        return len(self.classes)

    @property
    def dim(self) -> int:
        return int(self.W.shape[1])

    @property
    def feature_key(self) -> str:
        return f"{self.feature_set['name']}@{self.feature_set['version']}"

    def decision(self, X: np.ndarray) -> np.ndarray:
        """Raw scores ``Z = X Wᵀ − b``, (n, k): the one matrix product."""
        X = np.asarray(X, np.float32)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise ModelError(
                f"bundle {self.id} expects {self.dim}-d {self.feature_key} features, "
                f"got shape {X.shape}"
            )
        Z = X @ self.W.T - self.b
        for h in self.heads:
            if h.input == "l2":  # (x/|x|)·w − b: the raw product scaled per row
                norms = np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
                Z[:, h.start : h.stop] = (X @ self.W[h.start : h.stop].T) / norms - self.b[
                    h.start : h.stop
                ]
        return Z

    def learned_classes(self) -> list[str]:
        """The classes of the learned head group (tags of kind ``learned``)."""
        return [
            c
            for h in self.heads
            if h.group == LEARNED_GROUP
            for c in self.classes[h.start : h.stop]
        ]

    def score(self, X: np.ndarray) -> np.ndarray:
        """Probabilities (n, k): per head, softmax over the group or calibrated sigmoid."""
        Z = self.decision(X)
        P = np.empty_like(Z)
        for h in self.heads:
            z = Z[:, h.start : h.stop]
            if h.activation == "softmax":
                e = np.exp(z - z.max(axis=1, keepdims=True))
                P[:, h.start : h.stop] = e / e.sum(axis=1, keepdims=True)
            else:
                a, c = self.calib_a[h.start : h.stop], self.calib_c[h.start : h.stop]
                P[:, h.start : h.stop] = calibrated_sigmoid(z, a, c)
        return P

    def tags_for(
        self, probs_row: np.ndarray, min_score: float = 0.0, max_tags: int | None = None
    ) -> list[tuple[str, float]]:
        """Classes at or above their threshold (and ``min_score``), best first."""
        p = np.asarray(probs_row, np.float32).reshape(-1)
        keep = np.flatnonzero((p >= self.thresholds) & (p >= min_score))
        order = keep[np.argsort(-p[keep], kind="stable")]
        if max_tags is not None:
            order = order[:max_tags]
        return [(self.classes[i], float(p[i])) for i in order]

    def concept_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(concept_matrix, concept_thresholds)``, empty when the bundle has no concepts
        (a bundle with concepts has both: ``_validate_concepts``)."""
        M, thr = self.concept_matrix, self.concept_thresholds
        if M is None or thr is None:
            if self.concepts:
                raise ModelError(f"bundle {self.id}: concepts without their matrix/thresholds")
            return np.zeros((0, self.k), np.float32), np.zeros(0, np.float32)
        return M, thr

    def concept_scores(self, probs: np.ndarray) -> np.ndarray:
        """Concept probabilities (n, concepts): sums of class probabilities, one product."""
        P = np.asarray(probs, np.float32)
        if not self.concepts:
            return np.zeros((P.shape[0], 0), np.float32)
        return P @ self.concept_arrays()[0].T

    def concept_tags_for(
        self,
        probs_row: np.ndarray,
        concepts_row: np.ndarray,
        min_score: float = 0.0,
        max_tags: int | None = None,
    ) -> list[tuple[str, float, str]]:
        """Concepts at or above their threshold, best first, each with the class that
        contributed most: ``(tag, score, via)``."""
        if not self.concepts:
            return []
        p = np.asarray(probs_row, np.float32).reshape(-1)
        c = np.asarray(concepts_row, np.float32).reshape(-1)
        M, thr = self.concept_arrays()
        keep = np.flatnonzero((c >= thr) & (c >= min_score))
        order = keep[np.argsort(-c[keep], kind="stable")]
        if max_tags is not None:
            order = order[:max_tags]
        return [
            (self.concepts[i].tag, float(min(c[i], 1.0)), self.classes[int(np.argmax(M[i] * p))])
            for i in order
        ]

    # --- combining ----------------------------------------------------------------------

    def merge(
        self, other: ModelBundle, *, id: str | None = None, name: str | None = None
    ) -> ModelBundle:
        """This bundle's heads followed by ``other``'s, over the same feature set."""
        if self.feature_set != other.feature_set:
            raise ModelError(
                f"cannot merge {other.id} ({other.feature_key}, dim {other.dim}) into "
                f"{self.id} ({self.feature_key}, dim {self.dim}): different feature sets"
            )
        clash = sorted(set(self.classes) & set(other.classes))
        if clash:
            raise ModelError(f"cannot merge {other.id} into {self.id}: both have tags {clash[:5]}")
        groups = sorted({h.group for h in self.heads} & {h.group for h in other.heads})
        if groups:
            raise ModelError(f"cannot merge {other.id} into {self.id}: both have heads {groups}")
        off = self.k
        heads = self.heads + [
            dataclasses.replace(h, start=h.start + off, stop=h.stop + off) for h in other.heads
        ]
        merged_name = name or other.name
        return ModelBundle.create(
            id=id,
            name=merged_name,
            feature_set=self.feature_set,
            classes=self.classes + other.classes,
            heads=heads,
            W=np.concatenate([self.W, other.W]),
            b=np.concatenate([self.b, other.b]),
            thresholds=np.concatenate([self.thresholds, other.thresholds]),
            calib_a=np.concatenate([self.calib_a, other.calib_a]),
            calib_c=np.concatenate([self.calib_c, other.calib_c]),
            detectors=list(dict.fromkeys(self.detectors + other.detectors)),
            **_merged_concepts(self, other),
            metrics={**self.metrics, **other.metrics},
            dataset=other.dataset if other.dataset is not None else self.dataset,
            provenance={
                "merged_from": [self.id, other.id],
                "parts": {self.id: self.provenance, other.id: other.provenance},
            },
        )


def _merged_concepts(first: ModelBundle, second: ModelBundle) -> dict[str, Any]:
    """Both bundles' concepts over the merged columns (zeros for the other's classes)."""
    classes = set(first.classes) | set(second.classes)
    parts = []
    for b, left, right in ((first, 0, second.k), (second, first.k, 0)):
        # A trained class of the same name ("dog") replaces the concept.
        keep = [i for i, c in enumerate(b.concepts) if c.tag not in classes]
        if keep:
            matrix, thresholds = b.concept_arrays()
            M = np.pad(matrix[keep], ((0, 0), (left, right)))
            parts.append(([b.concepts[i] for i in keep], M, thresholds[keep]))
    if not parts:
        return {
            "class_words": {**first.class_words, **second.class_words},
            "class_is": {**first.class_is, **second.class_is},
        }
    return {
        "concepts": [c for p in parts for c in p[0]],
        "concept_matrix": np.concatenate([p[1] for p in parts]),
        "concept_thresholds": np.concatenate([p[2] for p in parts]),
        "class_words": {**first.class_words, **second.class_words},
        "class_is": {**first.class_is, **second.class_is},
    }


# --- the models directory ---------------------------------------------------------------


def read_manifest(path: str | Path) -> dict[str, Any]:
    """A bundle directory's manifest.json, unverified (for listings)."""
    mpath = Path(path) / MANIFEST_FILE
    try:
        data = json.loads(mpath.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"no bundle at {path} (missing {MANIFEST_FILE})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"bundle at {path}: unreadable {MANIFEST_FILE}: {exc}") from None
    if not isinstance(data, dict):
        raise ModelError(f"bundle at {path}: {MANIFEST_FILE} is not a JSON object")
    return data


def active_bundle_id(models_dir: str | Path) -> str | None:
    """The id in ``<models_dir>/ACTIVE``, or None when nothing is active."""
    try:
        text = (Path(models_dir) / ACTIVE_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return text or None


def summarize_manifest(m: dict[str, Any]) -> dict[str, Any]:
    """What a listing of bundles shows of one manifest (``list_bundles`` entries)."""
    fs = m.get("feature_set") or {}
    return {
        "id": m.get("id"),
        "name": m.get("name"),
        "created": m.get("created"),
        "feature_set": f"{fs.get('name')}@{fs.get('version')}" if fs else None,
        "classes": len(m.get("classes") or []),
        "heads": [h.get("group") for h in m.get("heads") or []],
        "active": bool(m.get("active")),
        "metrics": m.get("metrics") or {},
        "dataset": m.get("dataset"),
        "path": m.get("path"),
        **({"error": m["error"]} if "error" in m else {}),
    }


def list_bundles(models_dir: str | Path) -> list[dict[str, Any]]:
    """Every bundle's manifest plus ``path`` and ``active``, oldest first (unverified).

    An unreadable bundle is listed as ``{"id", "path", "error"}`` rather than hidden.
    """
    root = bundles_root(Path(models_dir))
    active = active_bundle_id(models_dir)
    out: list[dict[str, Any]] = []
    if not root.is_dir():
        return out
    for d in sorted(root.iterdir()):
        if not d.is_dir() or d.name.startswith("."):
            continue
        try:
            m = read_manifest(d)
            m["path"] = str(d)
        except ModelError as exc:
            m = {"id": d.name, "path": str(d), "error": str(exc)}
        m["active"] = m.get("id") == active
        out.append(m)
    out.sort(key=lambda m: (str(m.get("created", "")), str(m.get("id"))))
    return out


def set_active(models_dir: str | Path, bundle_id: str) -> None:
    """Make a (verified) bundle the active one: ``models/ACTIVE`` replaced atomically."""
    models_dir = Path(models_dir)
    load_bundle(models_dir, bundle_id)  # refuse a missing, corrupt or misnamed bundle
    models_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ACTIVE.", dir=models_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(bundle_id + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, models_dir / ACTIVE_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_bundle(models_dir: str | Path, bundle_id: str) -> ModelBundle:
    """The bundle in ``bundles/<bundle_id>/``, verified; its manifest must name that same id
    (a copied or planted folder must not pass for the bundle ACTIVE names)."""
    path = bundle_dir(Path(models_dir), bundle_id)
    if not path.is_dir():
        raise ModelError(f"no bundle {bundle_id!r} in {bundles_root(Path(models_dir))}")
    bundle = ModelBundle.load(path)
    if bundle.id != bundle_id:
        raise ModelError(f"bundle folder {bundle_id!r} holds a manifest for {bundle.id!r}")
    return bundle


def load_bundle_ref(models_dir: str | Path, ref: str | Path) -> ModelBundle:
    """A bundle by directory path, by id under ``models_dir``, or ``active``."""
    path = Path(ref)
    if (path / MANIFEST_FILE).is_file():
        return ModelBundle.load(path)
    if str(ref) == "active":
        return load_active(models_dir)
    return load_bundle(models_dir, str(ref))


def load_active(models_dir: str | Path) -> ModelBundle:
    """The active bundle, verified; ModelError (with what to do) when there is none."""
    bundle_id = active_bundle_id(models_dir)
    if bundle_id is None:
        raise ModelError(
            f"no active model bundle in {models_dir} "
            "(run `autotag models init-default`, or `autotag models activate ID`)"
        )
    return load_bundle(models_dir, bundle_id)
