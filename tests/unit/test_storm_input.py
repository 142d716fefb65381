"""StormInput: lines in order across chunk boundaries, end of input, and 'is more waiting'."""

from __future__ import annotations

import os
import threading
import time

from autotag.pipeline.storm_input import StormInput


def test_lines_waiting_and_eof() -> None:
    r, w = os.pipe()
    src = StormInput(r, chunk=5)  # small chunks: lines span several reads
    assert not src.waiting()  # nothing written yet
    os.write(w, b'{"id": 1}\nend\n{"id": 2}\nen')
    assert src.waiting()
    assert src.readline() == '{"id": 1}\n'
    assert src.readline() == "end\n"
    assert src.waiting()  # the next message is (partly) here
    assert src.readline() == '{"id": 2}\n'
    assert src.waiting()  # half a line has arrived: more is coming, do not stop for it
    os.write(w, b"d\n")
    assert src.readline() == "end\n"
    assert not src.waiting()  # everything read: idle
    os.close(w)
    assert src.readline() == ""  # Storm went away
    assert src.waiting()
    os.close(r)


def test_waiting_with_a_timeout_sees_what_arrives_meanwhile() -> None:
    r, w = os.pipe()
    src = StormInput(r)
    t0 = time.monotonic()
    assert not src.waiting(0.05)  # nothing came: it waited, then said so
    assert time.monotonic() - t0 >= 0.04
    timer = threading.Timer(0.05, os.write, (w, b'{"id": 3}\n'))
    timer.start()
    assert src.waiting(5.0)  # returns when the message arrives, not after 5 s
    assert time.monotonic() - t0 < 4.0
    assert src.readline() == '{"id": 3}\n'
    timer.join()
    os.close(w)
    os.close(r)
