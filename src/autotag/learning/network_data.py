"""What a network sees of the data: grey images as its input, their augmentation, the
validation split and the softmax over its logits. Plain numpy, shared by the network trainer
(``network_training``), its bundle (``network_workflow``) and the MLP head (``mlp_head``).
"""

from __future__ import annotations

import numpy as np


def to_input(images: np.ndarray) -> np.ndarray:
    """uint8 (n, H, W) grey → float32 (n, 1, H, W) in [0, 1]: the network's input."""
    return (np.asarray(images, np.float32) / np.float32(255.0))[:, None, :, :]


SHIFT = 2  # pixels; the shift is a random crop of the image zero-padded by SHIFT on each side


def augment(images: np.ndarray, flips: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """uint8 (n, H, W) images flipped left-right where ``flips`` and moved by ``shifts``
    ((n, 2) rows, columns in [-SHIFT, SHIFT]), zero filled: a random crop of the padded image."""
    n, h, w = images.shape
    padded = np.zeros((n, h + 2 * SHIFT, w + 2 * SHIFT), images.dtype)
    padded[:, SHIFT : SHIFT + h, SHIFT : SHIFT + w] = np.where(
        flips[:, None, None], images[:, :, ::-1], images
    )
    out = np.empty_like(images)
    for i, (dy, dx) in enumerate(shifts):
        out[i] = padded[i, SHIFT - dy : SHIFT - dy + h, SHIFT - dx : SHIFT - dx + w]
    return out


def split_validation(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows): a seeded, per-class stratified split."""
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        val.append(rng.permutation(rows)[: int(round(len(rows) * fraction))])
    val_rows = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    train_rows = np.setdiff1d(np.arange(len(y)), val_rows)
    return train_rows, val_rows


def softmax(z: np.ndarray) -> np.ndarray:
    """Row softmax in float64: the probabilities a bundle's softmax head gives."""
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)
