"""What reading a photo's own metadata adds per photo (issue 26): vision.metadata on JPEGs with
and without EXIF/GPS/XMP, the geocoder's lookup, and the whole ``where_when.describe``, next
to the reduced DCT decode the bolt already does; and a 12 Mpx camera RAW (a DNG written by
tests/raw_files.py) read, and decoded by its embedded preview against by LibRaw's half-size
demosaic. Busy-machine figures: re-measure idle.

    virtualenvs/autotag/bin/python bench/metadata_cost.py [--n 300]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/photo_metadata.py

from autotag.vision.decode import DecodeLimits, decode
from autotag.vision.metadata import read_metadata
from autotag.vision.places import geocoder
from autotag.vision.where_when import describe
from tests.photo_metadata import exif_for, heic_with, jpeg_with, picture, xmp_packet
from tests.raw_files import dng

LIMITS = DecodeLimits(max_file_bytes=50 << 20, max_pixels=50_000_000, max_dimension=20_000)


def per_call_ms(fn: Callable[[], object], n: int) -> float:
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return 1000 * times[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args()
    import io

    big = io.BytesIO()
    ex = exif_for("2021:04:03 10:15:00", "+02:00", 48.8584, 2.2945, 35.0, "Canon", "Canon EOS R")
    picture(1, (4000, 3000)).save(
        big, format="JPEG", quality=90, exif=ex, xmp=xmp_packet(["a", "b"])
    )
    full = big.getvalue()
    plain = jpeg_with(None)
    heic = heic_with(ex)
    # a 12 Mpx camera RAW (DNG) with a full-size embedded preview, and one without a preview
    raw_args = {"size": (4000, 3000), "taken": "2021:04:03 10:15:00", "lat": 48.8584, "lon": 2.2945}
    dng_preview = dng(1, preview=(4000, 3000), **raw_args)  # type: ignore[arg-type]
    dng_sensor = dng(1, **raw_args)  # type: ignore[arg-type]
    geocoder()
    rows = [
        ("read_metadata, 12 Mpx JPEG with EXIF+GPS+XMP", lambda: read_metadata(full, "JPEG")),
        ("read_metadata, JPEG without metadata", lambda: read_metadata(plain, "JPEG")),
        ("read_metadata, HEIC with EXIF", lambda: read_metadata(heic, "HEIF")),
        ("geocoder.locate", lambda: geocoder().locate(48.8584, 2.2945)),
        ("describe (metadata + place + tags), 12 Mpx JPEG", lambda: describe(full, "JPEG")),
        (
            "decode reduced (min_side 256), 12 Mpx JPEG, for scale",
            lambda: decode(full, LIMITS, min_side=256),
        ),
        ("read_metadata, 12 Mpx DNG", lambda: read_metadata(dng_preview, "RAW")),
        (
            "decode 12 Mpx DNG by its preview (min_side 256)",
            lambda: decode(dng_preview, LIMITS, min_side=256),
        ),
        (
            "decode 12 Mpx DNG without preview (half-size demosaic)",
            lambda: decode(dng_sensor, LIMITS, min_side=256),
        ),
    ]
    for name, fn in rows:
        n = args.n if "decode" not in name else max(10, args.n // 10)
        print(f"{per_call_ms(fn, n):8.3f} ms  {name}")
    print("(median per call; busy machine: re-measure idle)")


if __name__ == "__main__":
    main()
