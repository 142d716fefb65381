"""The web app learns by itself: after a label change on the page (or the API), a
background thread runs the learner (``learning.teach.learn``) a moment later, so a tag with
enough positive labels is learned, published and written on the stored photos without any
command. One thread per app; changes arriving meanwhile are picked up by the next run (the
learner only looks at tags whose labels changed). Tagging never waits for it."""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

from autotag.config import Settings
from autotag.learning import teach
from autotag.learning.learner import LearnOptions
from autotag.storage import database

log = logging.getLogger(__name__)
DEBOUNCE_SECS = 1.0  # labels given in a burst (five clicks) are learned in one run


def learn_options(s: Settings) -> LearnOptions:
    """The learner's options from the settings (``learn_*`` of the tagging section)."""
    t = s.tagging
    return LearnOptions(
        min_examples=t.learn_min_examples,
        target_precision=t.learn_target_precision,
        min_precision=t.learn_min_precision,
        assumed_prevalence=t.learn_assumed_share or None,
        questions=t.learn_questions,
        spot_check=t.learn_spot_check,
        spot_min_yes=t.learn_spot_min_yes,
    )


class BackgroundLearner:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.last: dict[str, Any] | None = None  # the last run's report

    def poke(self) -> None:
        """Labels changed: learn soon."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="learner", daemon=True)
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._wake.wait(DEBOUNCE_SECS):
                self._wake.clear()
            try:
                s = self.settings
                with database.connect(s.services) as conn:
                    report = teach.learn(conn, s.models_dir, learn_options(s))
                self.last = report.as_dict()
                if report.busy:  # another learner is running: try again shortly
                    self._wake.set()
            except Exception:  # noqa: BLE001 - a failed run must not end the thread
                log.exception("learning from labels failed")


_LEARNERS: weakref.WeakKeyDictionary[object, BackgroundLearner] = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


def learner_for(state: Any) -> BackgroundLearner:
    """The app's background learner (one per WebState)."""
    with _GUARD:
        found = _LEARNERS.get(state)
        if found is None:
            found = _LEARNERS[state] = BackgroundLearner(state.settings)
        return found
