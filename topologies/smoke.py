"""A minimal Python spout → bolt topology: proves the local cluster runs streamparse code."""

from streamparse import Grouping, Topology

from bolts.smoke import RecordBolt
from spouts.counter import CounterSpout


class Smoke(Topology):
    counter = CounterSpout.spec(par=1)
    record = RecordBolt.spec(inputs={counter: Grouping.SHUFFLE}, par=1)
