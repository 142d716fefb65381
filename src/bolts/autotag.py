"""Autotag bolt, daemonized: the model bundle is loaded once, in initialize(), and kept
(replaced only when another bundle is activated — no resubmit needed).

Per photo: mark it in progress → read the blob by its id → decode (OpenCV) → features →
every classifier in one matrix product → tags → clear the mark. A photo that cannot be
tagged is emitted as a *failed result* with its reason, so the DB writer records it and
Storm never replays it. If the process dies mid-photo, the mark tells the spout which photo
to charge; stopped from outside (SIGTERM: its worker is going down for another reason), the
bolt clears the mark first.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Callable

import cv2
from streamparse import Bolt

from autotag.config import TaggingSettings, settings
from autotag.contract import FAILED, RESULT_FIELDS
from autotag.pipeline.busy_meter import BusyMeter, meter_path
from autotag.pipeline.tag_step import ActiveTagger, TagStep, blob_reader, people_matcher
from autotag.storage.item_stream import ItemStream

# Fault injection for bench/chaos.py only: this photo kills the process tagging it.
CHAOS_KILL_ENV = "AUTOTAG_CHAOS_KILL_ON_PHOTO"
# Topology options (`sparse submit -o autotag.read_metadata=false`) overriding these tagging
# switches for this topology's bolts (bench/metadata_throughput.py, bench/steady_state.py).
TOPOLOGY_SWITCHES = ("read_metadata", "person_detection")


def _switched(tagging: TaggingSettings, stormconf: dict) -> TaggingSettings:
    """The tagging settings with the switches this submission set (``-o autotag.<switch>=``)."""
    for switch in TOPOLOGY_SWITCHES:
        if f"autotag.{switch}" in stormconf:
            on = str(stormconf[f"autotag.{switch}"]).strip().lower() in ("1", "true", "yes", "on")
            if switch == "read_metadata":
                tagging = dataclasses.replace(tagging, read_metadata=on)
            else:
                tagging = dataclasses.replace(tagging, person_detection=on)
    return tagging


def _chaos_hook() -> Callable[[str], None] | None:
    poison = os.environ.get(CHAOS_KILL_ENV)
    if not poison:
        return None

    def crash(photo_id: str) -> None:
        if photo_id == poison:
            os.kill(os.getpid(), signal.SIGKILL)  # as a native decoder crash would

    return crash


class AutotagBolt(Bolt):
    outputs = RESULT_FIELDS

    def initialize(self, stormconf, context) -> None:
        t0 = time.monotonic()
        s = settings()
        s = dataclasses.replace(s, tagging=_switched(s.tagging, stormconf))
        self.settings = s
        # One tagging process per core: OpenCV's own thread pool would only oversubscribe.
        cv2.setNumThreads(s.tagging.tagging_threads)
        timeout = int(stormconf.get("topology.message.timeout.secs", 120))
        self.step = TagStep(
            ActiveTagger(s.tagging, s.limits),
            # the local blob directory, or the intake host's blob service
            blob_reader(s.services, s.blob_dir),
            ItemStream(s.services, s.queue),
            max_bytes=s.limits.max_file_bytes,
            mark_ttl_secs=2 * timeout + 60,  # outlives a worker restart and a tuple timeout
            before_tagging=_chaos_hook(),
            matcher=people_matcher(s.tagging, s.services),  # faces of known people
        )
        # Its own busy and waiting time, for bench/steady_state.py.
        self.meter = BusyMeter(meter_path(s.run_dir, "autotag", context["taskid"]), 0.25)
        signal.signal(signal.SIGTERM, self._stopped_from_outside)
        loaded = self.step.tagger.current()
        self.logger.info(
            "model %s loaded once in %.2fs (%d classifiers)",
            loaded.model_version,
            time.monotonic() - t0,
            len(loaded.bundle.classes),
        )

    def process(self, tup) -> None:
        self.meter.begin()
        photo_id, source, _attempt = tup.values
        result = self.step.run(photo_id)
        if result.status == FAILED:
            self.logger.warning("photo %s (%s) failed: %s", photo_id, source, result.reason)
        self.emit(result.to_tuple())
        self.meter.end()

    def _stopped_from_outside(self, signum, _frame) -> None:
        # A fresh connection: the signal may have interrupted one in use.
        self.step.release(ItemStream(self.settings.services, self.settings.queue))
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
