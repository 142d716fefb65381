"""The autotagger topology (not "autotag": streamparse imports topology files by module
name, which would clash with the autotag package): image spout → autotag bolts → DB writer (Flickr's AutoTags).

    photos (1) ──shuffle──▶ autotag (N, daemonized model) ──shuffle──▶ db_writer (1) ──▶ Postgres
       └──────────────── dead_letters (photos that ran out of attempts) ──────────▲

    videos (1) ──shuffle──▶ video (2, one segment per tuple) ──shuffle──▶ video_writer (1)
       └──────────────── dead_letters (segments that ran out of attempts) ────────▲

The video branch reads its own stream of segments and shares nothing with the photo path.

Parallelism: one tagging process per core of the submitting host (AUTOTAG_TAGGING_PROCESSES
sets another number); on a bigger cluster raise it with `topology.workers`.
"""

from streamparse import Grouping, Topology

from autotag.config import settings
from autotag.ops.queue_metrics import consumer_config
from bolts.autotag import AutotagBolt
from bolts.dbwriter import DbWriterBolt
from bolts.segments import VideoBolt
from bolts.video_writer import VideoWriterBolt
from spouts.photos import PhotoSpout
from spouts.videos import VideoSpout

TAGGERS = settings().tagging.taggers


class Autotag(Topology):
    config = {
        "topology.workers": 1,
        "topology.acker.executors": 1,
        # Photos in flight per spout task: a full DB-writer batch (db_batch_size) and 32 per
        # tagging process, so the taggers never wait for a commit; the DB writer also commits
        # whenever its input is idle, so a partial batch never waits for more.
        "topology.max.spout.pending": max(64, 32 * TAGGERS),
        "topology.message.timeout.secs": 120,  # a photo not stored by then is replayed
        "topology.subprocess.timeout.secs": 120,  # a slow photo must not kill its bolt process
        # Tuples between workers (on other hosts) are Kryo-serialised; multilang JSON turns a
        # result's tag list, scores and vector into these classes, which Kryo must know.
        "topology.kryo.register": [
            "org.apache.storm.shade.net.minidev.json.JSONArray",
            "org.apache.storm.shade.net.minidev.json.JSONObject",
            "java.math.BigDecimal",
            "java.math.BigInteger",
        ],
        # An idle executor sleeps at once, instead of first waking up 1,000 times (Storm's
        # default level 2), and 10 ms at a time instead of 1: with a dozen executors in the
        # worker, those wake-ups cost the JVM more CPU than it spends moving the photos. A
        # queue still drains in one go after the sleep, so throughput does not pay for it;
        # latency pays at most a few of those sleeps per photo.
        "topology.bolt.wait.progressive.level2.count": 0,
        "topology.bolt.wait.progressive.level3.sleep.millis": 10,
        "topology.spout.wait.progressive.level3.sleep.millis": 10,
        "topology.backpressure.wait.progressive.level2.count": 0,
        "topology.backpressure.wait.progressive.level3.sleep.millis": 10,
        # Storm's queue gauges per executor, logged for `autotag queues` (queue_metrics_secs).
        **consumer_config(settings().storm.queue_metrics_secs),
    }

    photos = PhotoSpout.spec(par=1)
    autotag = AutotagBolt.spec(inputs={photos: Grouping.SHUFFLE}, par=TAGGERS)
    db_writer = DbWriterBolt.spec(
        inputs={autotag: Grouping.SHUFFLE, photos["dead_letters"]: Grouping.SHUFFLE},
        par=1,
        config={"topology.tick.tuple.freq.secs": 1},
    )

    videos = VideoSpout.spec(par=1, config={"topology.max.spout.pending": 2})
    video = VideoBolt.spec(inputs={videos: Grouping.SHUFFLE}, par=2)
    video_writer = VideoWriterBolt.spec(
        inputs={video: Grouping.SHUFFLE, videos["dead_letters"]: Grouping.SHUFFLE},
        par=1,
        config={"topology.tick.tuple.freq.secs": 1},
    )
