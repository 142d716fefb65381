"""Face verification on a second labelled set from a registry package: face_recognition's tests.

PyPI ``face-recognition`` 1.3.0's source distribution ships its test photos
(``tests/test_images``, MIT): obama.jpg, obama2.jpg, obama3.jpg, biden.jpg and two crops of
obama.jpg (obama_partial_face, obama_partial_face2); 32bit.png is obama2.jpg again as a
32-bit PNG and is left out. Pairs: every two photos, except a crop with obama.jpg (the same
picture) or with the other crop: 12 pairs, 7 same and 5 different. It is tiny (two people),
so it checks the threshold on photos from another source, not an accuracy to quote.

Get the sdist with pip (nothing is downloaded here), then run bench/face_identity.py on it:

    pip download --no-deps --no-binary :all: face-recognition==1.3.0 -d DIR
    python bench/face_identity_second_set.py DIR/face_recognition-1.3.0.tar.gz [--json]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

MEMBER = "face_recognition-1.3.0/tests/test_images/"
PHOTOS = [
    "obama.jpg",
    "obama2.jpg",
    "obama3.jpg",
    "biden.jpg",
    "obama_partial_face.jpg",
    "obama_partial_face2.jpg",
]


def pairs() -> list[tuple[str, str, str]]:
    out = []
    for a, b in itertools.combinations(PHOTOS, 2):
        crops = ["partial" in a, "partial" in b]
        if all(crops) or (any(crops) and "obama.jpg" in (a, b)):
            continue  # the same picture, not a pair
        out.append((a, b, "Yes" if ("biden" in a) == ("biden" in b) else "No"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sdist", type=Path, help="face_recognition-1.3.0.tar.gz from pip download")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(args.sdist) as tar:
        data = Path(tmp)
        for name in PHOTOS:  # only the named members, each to a name chosen here
            member = tar.extractfile(MEMBER + name)
            if member is None:
                raise SystemExit(f"{args.sdist} has no {MEMBER + name}")
            (data / name).write_bytes(member.read())
        with (data / "master.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file_x", "file_y", "Decision"])
            w.writerows(pairs())
        bench = Path(__file__).resolve().parent / "face_identity.py"
        cmd = [sys.executable, str(bench), "--data", str(data)]
        sys.exit(subprocess.run([*cmd, "--json"] if args.json else cmd, check=False).returncode)


if __name__ == "__main__":
    main()
