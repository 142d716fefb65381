"""Teaching tags from labels, end to end: read the labels and their stored vectors, learn,
shadow-check, publish a bundle, activate it, re-score the stored library.

``learn`` looks at every labelled tag whose labels changed since it was last looked at (a
signature of its labels is kept in ``learned_tags``) and has ``min_examples`` positives.
A new tag the learner can fit (``learner.fit_tag``) first asks the user (``questions``):
yes/no on the photos nearest its threshold, then a spot check of photos it would tag; the
answers are labels, so each one brings the tag back here. The tags that passed (and changes
to tags already published) go into a candidate bundle (``learned_bundle``), which is
published only if, on every label the user has given, it gets no tag more wrong than the
active bundle (the shadow check). Then ``models/ACTIVE`` names it, so the running
bolts tag new uploads with it within seconds, and one vectorized pass over ``photo_vectors``
(``rescore``) writes the changed learned tags on every stored photo. Nothing here touches
the topology: learning never stops or slows tagging.

One learner at a time (a Postgres advisory lock): a second caller returns at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from autotag.errors import ModelError
from autotag.learning import questions
from autotag.learning.learned_bundle import (
    Row,
    compose,
    fit_row,
    learned_rows,
    origin,
    row_probabilities,
    versions_learning,
    with_thresholds,
)
from autotag.learning.learner import (
    LearnOptions,
    TagFit,
    fit_tag,
    l2,
    recalibrated_threshold,
    shadow_check,
)
from autotag.storage import learned as store
from autotag.vision.bundle import ModelBundle, load_active, set_active


@dataclass
class Outcome:
    tag: str
    status: str  # learned | not-yet | refused | asking | recalibrated
    message: str
    n_pos: int = 0
    n_neg: int = 0
    precision: float | None = None
    recall: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    bundle_id: str | None = None  # the bundle published (None: nothing published)
    rescored: dict[str, Any] = field(default_factory=dict)
    busy: bool = False  # another learner held the lock
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcomes": [o.as_dict() for o in self.outcomes],
            "bundle_id": self.bundle_id,
            "rescored": self.rescored,
            "busy": self.busy,
            "seconds": round(self.seconds, 3),
        }


def feature_set_name(bundle: ModelBundle) -> str:
    return bundle.feature_key


class _Labels:
    """Every label, by tag, with the stored vectors of the labelled photos."""

    def __init__(self, conn: psycopg.Connection[Any], feature_set: str) -> None:
        self.pos: dict[str, set[str]] = {}
        self.neg: dict[str, set[str]] = {}
        for pid, tag, positive in store.all_labels(conn):
            (self.pos if positive else self.neg).setdefault(tag, set()).add(pid)
        every = set().union(*self.pos.values(), *self.neg.values())
        ids, X = store.vectors_of(conn, feature_set, sorted(every))
        self.row = {pid: i for i, pid in enumerate(ids)}
        self.X = X

    def vectors(self, ids: Iterable[str]) -> np.ndarray:
        idx = [self.row[p] for p in sorted(ids) if p in self.row]
        if not idx:
            return np.zeros((0, self.X.shape[1] if self.X.size else 0), np.float32)
        return self.X[idx]

    def labelled(self, tag: str) -> tuple[list[str], np.ndarray]:
        """(photo ids with a vector, 1/0 labels) of one tag."""
        ids = [p for p in sorted(self.pos.get(tag, set())) if p in self.row]
        y = [1] * len(ids)
        neg = [p for p in sorted(self.neg.get(tag, set())) if p in self.row]
        return ids + neg, np.asarray(y + [0] * len(neg), np.int8)

    def others_positive(self, tag: str) -> set[str]:
        out: set[str] = set()
        for t, ids in self.pos.items():
            if t != tag:
                out |= ids
        return out - self.pos.get(tag, set())


def learn(
    conn: psycopg.Connection[Any],
    models_dir: Path,
    options: LearnOptions = LearnOptions(),  # noqa: B008 - frozen
    *,
    tags: Sequence[str] | None = None,
    force: bool = False,
    say: Callable[[str], None] | None = None,
) -> Report:
    """Learn the tags whose labels changed (or ``tags``; ``force``: even if unchanged)."""
    t0 = time.perf_counter()
    report = Report()
    if not store.try_lock(conn):
        report.busy = True
        return report
    try:
        _learn(conn, Path(models_dir), options, tags, force, report, say or (lambda _m: None))
    finally:
        store.unlock(conn)
    report.seconds = time.perf_counter() - t0
    return report


def _learn(
    conn: psycopg.Connection[Any],
    models_dir: Path,
    options: LearnOptions,
    only: Sequence[str] | None,
    force: bool,
    report: Report,
    say: Callable[[str], None],
) -> None:
    active = load_active(models_dir)
    fs = feature_set_name(active)
    stats = store.label_stats(conn)
    seen = store.states(conn)
    current = learned_rows(active)
    recalibrated = recalibrate(conn, models_dir, active, only, report, say)
    if recalibrated:
        active = load_active(models_dir)
    todo = []
    checked: dict[str, TagFit] = {}  # tags whose spot check passed
    notes: dict[str, str] = {}  # tags whose spot check failed: ask again
    for tag, st in sorted(stats.items()):
        if only is not None and tag not in only:
            continue
        if tag in recalibrated:
            continue
        prev = seen.get(tag)
        changed = prev is None or prev.labels_seen != st.signature
        if not (changed or force):
            continue
        if prev is not None and prev.status == "asking" and tag not in current:
            waiting = store.unanswered(conn, tag, prev.questions)
            if waiting:
                answered = len(prev.questions) - len(waiting)
                msg = _asking_message(tag, prev.phase, len(prev.questions), answered)
                store.mark_seen(conn, tag, "asking", msg, st.signature)
                report.outcomes.append(Outcome(tag, "asking", msg, st.n_pos, st.n_neg))
                continue
            if prev.phase == "spot":
                yes = sum(store.answers(conn, tag, prev.questions).values())
                n_asked = len(prev.questions)
                if questions.spot_passed(yes, n_asked, options.spot_check, options.spot_min_yes):
                    was = _checked(conn, prev, f"{yes} of {n_asked}")
                    if was is not None:  # published as it was checked
                        checked[tag] = was
                        continue
                else:
                    notes[tag] = f"the spot check found {yes} of {n_asked} right; "
        if st.n_pos < options.min_examples and tag not in current:
            msg = f"add examples: {st.n_pos} of {options.min_examples} positive labels"
            store.save_state(
                conn,
                tag,
                "not-yet",
                msg,
                bundle_id=None,
                n_pos=st.n_pos,
                n_neg=st.n_neg,
                precision=None,
                recall=None,
                threshold=None,
                labels_seen=st.signature,
            )
            report.outcomes.append(Outcome(tag, "not-yet", msg, st.n_pos, st.n_neg))
            continue
        todo.append(tag)
    if not todo and not checked:
        return
    data = _Labels(conn, fs)
    for tag, fit in checked.items():  # counted as a fit counts its examples
        fit.n_pos = len(data.vectors(data.pos.get(tag, set())))
        fit.n_neg = len(data.vectors(data.neg.get(tag, set()) | data.others_positive(tag)))
    _ids, library = store.sample_vectors(conn, fs, options.library_sample)
    fits: dict[str, TagFit] = {}
    for tag in todo:
        pos_ids = data.pos.get(tag, set())
        neg_ids = data.neg.get(tag, set()) | data.others_positive(tag)
        lib_mask = np.ones(len(library), bool)
        if len(_ids):
            labelled = pos_ids | data.neg.get(tag, set())
            lib_mask = np.asarray([p not in labelled for p in _ids], bool)
        fit = fit_tag(
            tag,
            data.vectors(pos_ids),
            data.vectors(neg_ids),
            library[lib_mask] if len(library) else library,
            options,
        )
        if fit.ok:
            say(
                f"{tag}: fitted on {fit.n_pos} examples and {fit.n_neg} counter-examples"
                f" (estimated precision {fit.precision:.2f}, recall {fit.recall:.2f})"
            )
        fits[tag] = fit
    learned: dict[str, TagFit] = dict(checked)
    for tag, fit in fits.items():
        if not fit.ok:
            kept = " (the tag learned before is kept)" if tag in current else ""
            msg = notes.get(tag, "") + fit.message + kept
            _save(conn, tag, "not-yet", msg, None, fit, stats[tag].signature)
            report.outcomes.append(_outcome(fit, "not-yet", msg))
        elif tag in current or not options.asks:
            learned[tag] = fit  # a published tag's changes go out through the shadow check
        else:
            before = seen.get(tag)
            phase = before.phase if before is not None and before.status == "asking" else None
            if tag in notes:
                phase = None  # the spot check failed: from the nearest photos again
            sig = stats[tag].signature
            next_step = ask(conn, fit, phase, sig, fs, options, notes.get(tag, ""))
            if next_step is None:
                learned[tag] = fit
            else:
                report.outcomes.append(next_step)
    if not learned:
        return
    rows = dict(current)
    rows.update({t: fit_row(f) for t, f in learned.items()})
    metrics = {t: dict((active.metrics.get("learned") or {}).get(t, {})) for t in current}
    metrics.update({t: f.metrics() for t, f in learned.items()})
    candidate = compose(active, rows, metrics, origin(models_dir, active))
    worse = shadow(conn, data, active, candidate, current, rows)
    if worse:
        msg = "refused by the shadow check: worse than the active model on " + ", ".join(
            f"{t} ({a} -> {c} labels wrong)" for t, (a, c) in sorted(worse.items())
        )
        say(msg)
        for tag, fit in learned.items():
            _save(conn, tag, "refused", msg, None, fit, stats[tag].signature)
            report.outcomes.append(_outcome(fit, "refused", msg))
        return
    publish(models_dir, candidate)
    report.bundle_id = candidate.id
    say(f"published and activated {candidate.id}")
    for tag, fit in learned.items():
        checked_by = fit.info.get("spot_check")
        said = f"learned (spot check: {checked_by} right)" if checked_by else "learned"
        _save(conn, tag, "learned", said, candidate.id, fit, stats[tag].signature)
        report.outcomes.append(_outcome(fit, "learned", f"learned into {candidate.id}"))
    report.rescored = rescore(conn, fs, {t: rows[t] for t in learned}, candidate.id)


def _asking_message(tag: str, phase: str | None, asked: int, answered: int) -> str:
    what = (
        "is it right on these photos it would tag?"
        if phase == "spot"
        else "does each of these photos nearest its threshold have it?"
    )
    return (
        f"asking before publishing: {what} {answered} of {asked} answered"
        f" (autotag learned questions {tag}, or the Learned page)"
    )


def ask(
    conn: psycopg.Connection[Any],
    fit: TagFit,
    phase_done: str | None,
    signature: str,
    feature_set: str,
    options: LearnOptions,
    note: str = "",
) -> Outcome | None:
    """A new tag's next questions (``learning.questions``), saved as ``asking``: the photos
    nearest its threshold first (``phase_done`` None), then, those answered (``phase_done``
    = 'near'), a spot check of photos it would tag, whose head is kept to be published as it
    was checked. None: nothing left to ask (no spot check configured): publish it."""
    tag = fit.tag
    ids, probs = _library_probabilities(conn, fit, feature_set)
    if phase_done is None and options.questions > 0:
        order = questions.nearest(probs, fit.threshold, -1)
        asked = _diverse(conn, feature_set, ids, order, options.questions)
        if asked:
            return _save_asking(conn, fit, "near", asked, signature, note)
    if options.spot_check <= 0:
        return None
    order = questions.spot_sample(probs, fit.threshold, -1, questions.seeded_rng(tag, signature))
    asked = _diverse(conn, feature_set, ids, order, options.spot_check)
    if not asked:
        msg = note + (
            f"cannot learn yet: it would tag none of the other {len(ids)} stored photos;"
            " add examples (or upload more photos of the kind)"
        )
        _save(conn, tag, "not-yet", msg, None, fit, signature)
        return _outcome(fit, "not-yet", msg)
    out = _save_asking(conn, fit, "spot", asked, signature, note)
    assert fit.w is not None
    store.save_candidate(conn, tag, fit.w, fit.b, fit.calib_a, fit.calib_c)
    return out


def _checked(conn: psycopg.Connection[Any], prev: store.LearnedState, spot: str) -> TagFit | None:
    """The head a passed spot check was asked about, to be published as it was checked (a
    head fitted again with the answers would not be the one the user saw). Its example
    counts are filled in where the labels are read."""
    kept = store.candidate(conn, prev.tag)
    if kept is None:
        return None
    w, b, calib_a, calib_c, threshold = kept
    return TagFit(
        prev.tag,
        True,
        "learned",
        0,
        0,
        w,
        b,
        calib_a,
        calib_c,
        threshold,
        prev.precision,
        prev.recall,
        {"spot_check": spot},
    )


def _diverse(
    conn: psycopg.Connection[Any], feature_set: str, ids: list[str], order: np.ndarray, n: int
) -> list[str]:
    """The first ``n`` photos of ``order`` (indices into ``ids``) that are not near copies
    of one already taken (``questions.diverse``, on their stored vectors)."""
    head = [ids[i] for i in order[: 50 * n]]  # near copies come in bursts, not hundreds
    got, X = store.vectors_of(conn, feature_set, head)
    row = {pid: i for i, pid in enumerate(got)}
    keep = [pid for pid in head if pid in row]
    if not keep:
        return []
    vectors = l2(X[[row[pid] for pid in keep]])
    return [keep[i] for i in questions.diverse(np.arange(len(keep)), vectors, n)]


def _library_probabilities(
    conn: psycopg.Connection[Any], fit: TagFit, feature_set: str
) -> tuple[list[str], np.ndarray]:
    """The fitted tag's probability on every stored photo without a label for it."""
    row = fit_row(fit)
    labelled = {pid for pid, _t, _pos, _at in store.list_labels(conn, fit.tag, limit=1_000_000)}
    ids: list[str] = []
    probs: list[np.ndarray] = []
    for chunk_ids, X in store.vector_chunks(conn, feature_set):
        keep = [i for i, pid in enumerate(chunk_ids) if pid not in labelled]
        if keep:
            ids.extend(chunk_ids[i] for i in keep)
            probs.append(np.asarray(row_probabilities(row, X[keep]), np.float64))
    return ids, np.concatenate(probs) if probs else np.zeros(0)


def _save_asking(
    conn: psycopg.Connection[Any],
    fit: TagFit,
    phase: str,
    photo_ids: list[str],
    signature: str,
    note: str,
) -> Outcome:
    msg = note + _asking_message(fit.tag, phase, len(photo_ids), 0)
    _save(conn, fit.tag, "asking", msg, None, fit, signature, phase, photo_ids)
    return _outcome(fit, "asking", msg)


def recalibrate(
    conn: psycopg.Connection[Any],
    models_dir: Path,
    active: ModelBundle,
    only: Sequence[str] | None,
    report: Report,
    say: Callable[[str], None],
) -> set[str]:
    """Corrections of the model's own tags: removals of a leaf or concept tag the model
    gives are negatives that raise that class's threshold (``recalibrated_threshold``, on
    the stored scores of its labelled photos). The new thresholds go out as a new bundle
    version only if the shadow check passes on that tag's labels; then the backlog loses
    the tag where its stored score is below the new threshold. Returns the tags changed."""
    data_pos: dict[str, set[str]] = {}
    data_neg: dict[str, set[str]] = {}
    for pid, tag, positive in store.all_labels(conn):
        (data_pos if positive else data_neg).setdefault(tag, set()).add(pid)
    learned = set(learned_rows(active))
    thresholds = dict(zip(active.classes, active.thresholds.tolist(), strict=True))
    if active.concept_thresholds is not None:
        for c, t in zip(active.concepts, active.concept_thresholds.tolist(), strict=True):
            thresholds[c.tag] = t
    new: dict[str, float] = {}
    checks: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for tag in sorted(data_neg):
        if tag in learned or tag not in thresholds or (only is not None and tag not in only):
            continue
        pos_ids, neg_ids = sorted(data_pos.get(tag, set())), sorted(data_neg[tag])
        scores = store.model_tag_scores(conn, tag, pos_ids + neg_ids)
        pos_s = np.asarray([scores.get(p, 0.0) for p in pos_ids], np.float64)
        neg_s = np.asarray([scores.get(p, 0.0) for p in neg_ids], np.float64)
        thr = recalibrated_threshold(thresholds[tag], pos_s, neg_s)
        if thr is None:
            continue
        y = np.concatenate([np.ones(len(pos_s), np.int8), np.zeros(len(neg_s), np.int8)])
        z = np.concatenate([pos_s, neg_s])
        checks[tag] = (y, z >= thresholds[tag], z >= thr)
        new[tag] = thr
    if not new:
        return set()
    worse = shadow_check(checks)
    for tag in sorted(worse):
        msg = "recalibration refused by the shadow check"
        report.outcomes.append(Outcome(tag, "refused", msg, 0, len(data_neg[tag])))
        new.pop(tag)
    if not new:
        return set()
    candidate = with_thresholds(active, new)
    publish(models_dir, candidate)
    report.bundle_id = candidate.id
    say(f"published and activated {candidate.id} (recalibrated {', '.join(sorted(new))})")
    with conn.transaction():
        for tag, thr in sorted(new.items()):
            dropped = store.drop_model_tags_below(conn, tag, thr)
            msg = f"recalibrated: threshold {thresholds[tag]:.3f} -> {thr:.3f}, {dropped} dropped"
            say(f"{tag}: {msg}")
            report.outcomes.append(
                Outcome(tag, "recalibrated", msg, len(data_pos.get(tag, ())), len(data_neg[tag]))
            )
    return set(new)


def _outcome(fit: TagFit, status: str, message: str) -> Outcome:
    return Outcome(fit.tag, status, message, fit.n_pos, fit.n_neg, fit.precision, fit.recall)


def _save(
    conn: psycopg.Connection[Any],
    tag: str,
    status: str,
    message: str,
    bundle_id: str | None,
    fit: TagFit,
    seen: str,
    phase: str | None = None,
    questions: Sequence[str] = (),
) -> None:
    if status not in ("learned", "asking"):
        prev = store.states(conn).get(tag)
        if prev is not None and prev.status == "learned":  # keep what is published
            store.mark_seen(conn, tag, "learned", message, seen)
            return
    store.save_state(
        conn,
        tag,
        status,
        message,
        bundle_id=bundle_id,
        n_pos=fit.n_pos,
        n_neg=fit.n_neg,
        precision=fit.precision,
        recall=fit.recall,
        threshold=fit.threshold if fit.w is not None else None,
        labels_seen=seen,
        phase=phase,
        questions=questions,
    )


def shadow(
    conn: psycopg.Connection[Any],
    data: _Labels,
    active: ModelBundle,
    candidate: ModelBundle,
    current: Mapping[str, Row],
    rows: Mapping[str, Row],
) -> dict[str, tuple[int, int]]:
    """The shadow check on every labelled tag the active bundle gives: a learned tag's
    decisions are computed from the stored vectors (exactly what the bundle computes), a
    base tag's are the photos' current stored tags (its row is copied unchanged unless a
    learned tag replaces it)."""
    produced = set(active.classes) | {c.tag for c in active.concepts}
    by_tag = {}
    for tag in sorted(set(data.pos) | set(data.neg)):
        if tag not in produced or tag not in rows:
            continue  # unchanged (a base tag kept) or new (nothing to be worse than)
        ids, y = data.labelled(tag)
        if not ids:
            continue
        X = data.vectors(ids)
        X = data.X[[data.row[p] for p in ids]]
        cand = row_probabilities(rows[tag], X) >= rows[tag]["thresholds"]
        if tag in current:
            act = row_probabilities(current[tag], X) >= current[tag]["thresholds"]
        else:
            have = store.photos_with_tag(conn, tag, ids)
            act = np.asarray([p in have for p in ids], bool)
        by_tag[tag] = (y, act, cand)
    return shadow_check(by_tag)


def publish(models_dir: Path, bundle: ModelBundle) -> None:
    """Install and activate (the bolts follow models/ACTIVE)."""
    bundle.install(models_dir)
    set_active(models_dir, bundle.id)


def score_chunk(
    W: np.ndarray, b: np.ndarray, a: np.ndarray, c: np.ndarray, thr: np.ndarray, X: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Learned rows (m) on stored vectors X (n, d): (photo rows, tag rows, scores) at or
    above each tag's threshold, in one matrix product (the rows are L2-normalized here)."""
    norms = np.linalg.norm(X, axis=1)
    np.maximum(norms, 1e-12, out=norms)
    Z = X @ W.T
    Z /= norms[:, None]
    Z -= b
    t = a * Z + c
    P = 0.5 * (1.0 + np.tanh(0.5 * t))
    i, j = np.nonzero(P >= thr)
    return i, j, P[i, j]


def stack_rows(rows: Mapping[str, Row]) -> tuple[list[str], tuple[np.ndarray, ...]]:
    tags = sorted(rows)
    return tags, (
        np.stack([rows[t]["W"] for t in tags]).astype(np.float32),
        np.asarray([rows[t]["b"] for t in tags], np.float32),
        np.asarray([rows[t]["calib_a"] for t in tags], np.float32),
        np.asarray([rows[t]["calib_c"] for t in tags], np.float32),
        np.asarray([rows[t]["thresholds"] for t in tags], np.float32),
    )


def rescore(
    conn: psycopg.Connection[Any],
    feature_set: str,
    rows: Mapping[str, Row],
    bundle_id: str,
    chunk: int = 8192,
) -> dict[str, Any]:
    """One pass over the stored vectors: the learned tags ``rows`` replaced on every photo
    (written where they apply, removed elsewhere), in one transaction."""
    t0 = time.perf_counter()
    tags, (W, b, a, c, thr) = stack_rows(rows)
    n = tagged = 0
    score_s = 0.0
    hits: list[tuple[list[str], list[str], list[float]]] = []
    for ids, X in store.vector_chunks(conn, feature_set, chunk):
        t1 = time.perf_counter()
        i, j, p = score_chunk(W, b, a, c, thr, X)
        score_s += time.perf_counter() - t1
        hits.append(([ids[k] for k in i], [tags[k] for k in j], p.tolist()))
        n += len(ids)
    read_s = time.perf_counter() - t0 - score_s
    with conn.transaction():
        store.clear_learned_tags(conn, tags)
        for pids, tnames, scores in hits:
            tagged += store.write_learned_tags(conn, pids, tnames, scores, bundle_id)
    total = time.perf_counter() - t0
    return {
        "photos": n,
        "tags_written": tagged,
        "seconds": round(total, 3),
        "read_seconds": round(read_s, 3),
        "score_seconds": round(score_s, 3),
        "photos_per_second": round(n / total) if total > 0 else None,
    }


def forget(conn: psycopg.Connection[Any], models_dir: Path, tag: str) -> dict[str, Any]:
    """Remove a learned tag everywhere: its head (a new bundle without it, activated), its
    stored tags, its labels and the learner's record of it."""
    models_dir = Path(models_dir)
    if not store.try_lock(conn):
        raise ModelError("the learner is busy; try again in a moment")
    try:
        active = load_active(models_dir)
        current = learned_rows(active)
        bundle_id = None
        if tag in current:
            rows = {t: r for t, r in current.items() if t != tag}
            metrics = {t: m for t, m in (active.metrics.get("learned") or {}).items() if t in rows}
            candidate = compose(active, rows, metrics, origin(models_dir, active))
            publish(models_dir, candidate)
            bundle_id = candidate.id
        with conn.transaction():
            labels, tags = store.forget(conn, tag, versions_learning(models_dir, tag))
    finally:
        store.unlock(conn)
    return {
        "tag": tag,
        "bundle_id": bundle_id,
        "labels_deleted": labels,
        "tags_deleted": tags,
        "was_learned": tag in current,
    }
