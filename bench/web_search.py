"""The Search page's queries on a big table: EXPLAIN ANALYZE and server times.

Loads N synthetic photos (default 100,000) with their current tags into a database of its
own on the running Postgres (``autotag cluster up postgres``), with the real schema
(migrations), then prints the plan of the page's search query (``lookups.search_sql``) and of its capped match
count for a common tag, and the server time (median of repeated runs) of that search, of
newest-first order, a deep page, a two-tag AND search, and of the tag counts behind the tag
cloud and autocomplete.

Tags follow a Zipf law over a 2,000-word vocabulary (as real tags do), plus one common tag
("dog") on a third of the photos: the search the page must answer in < 300 ms.

    python bench/web_search.py                   # 100,000 photos
    python bench/web_search.py --photos 2000     # a quick check
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from psycopg import sql

from autotag.config import settings
from autotag.storage import database, lookups

DB = "autotag_bench_web_search"
COMMON = "dog"


def load(conn: Any, n_photos: int, tags_per_photo: int, seed: int = 0) -> int:
    """Photos (tagged, model m1) and their tags via COPY; returns tag rows written."""
    rng = np.random.default_rng(seed)
    vocab = [f"tag{i:04d}" for i in range(2000)]
    ids = [hashlib.sha256(f"bench-{i}".encode()).hexdigest() for i in range(n_photos)]
    rows = 0
    with conn.cursor() as cur:
        with cur.copy(
            "COPY photos (photo_id, status, source, bytes, model_version, uploaded_at, tagged_at)"
            " FROM STDIN"
        ) as copy:
            now = datetime.now(UTC)
            ages = rng.uniform(0, 30 * 86400, n_photos)  # uploaded over the last 30 days
            for i, pid in enumerate(ids):
                at = now - timedelta(seconds=float(ages[i]))
                copy.write_row((pid, "tagged", f"p{i}.jpg", 100_000, "m1", at, at))
        ranks = rng.zipf(1.3, size=(n_photos, tags_per_photo * 2)) - 1
        with cur.copy("COPY tags (photo_id, tag, score, model_version) FROM STDIN") as copy:
            for i, pid in enumerate(ids):
                chosen = {vocab[r % len(vocab)] for r in ranks[i]}
                names = sorted(chosen)[:tags_per_photo]
                if rng.random() < 1 / 3:
                    names = [COMMON, *names[: tags_per_photo - 1]]
                for name, score in zip(names, rng.uniform(0.05, 1.0, len(names)), strict=True):
                    copy.write_row((pid, name, float(score), "m1"))
                    rows += 1
    conn.execute("ANALYZE photos")
    conn.execute("ANALYZE tags")
    return rows


def server_ms(conn: Any, query: str, params: dict[str, Any], repeat: int = 7) -> float:
    """Median execution time Postgres reports (EXPLAIN ANALYZE), in ms: server time only."""
    times = []
    for _ in range(repeat):
        plan = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}", params).fetchone()[0]
        times.append(float(plan[0]["Execution Time"]))
    return statistics.median(times)


def wall_ms(fn: Any, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=100_000)
    ap.add_argument("--tags-per-photo", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = ap.parse_args()
    s = settings()
    admin = dataclasses.replace(s, postgres_db="postgres")
    with database.connect(admin, migrate_schema=False) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
    bench = dataclasses.replace(s, postgres_db=DB)
    try:
        with database.connect(bench) as conn:
            t0 = time.perf_counter()
            n_tags = load(conn, args.photos, args.tags_per_photo)
            (common,) = conn.execute(
                "SELECT count(*) FROM tags WHERE tag = %s", (COMMON,)
            ).fetchone()
            print(
                f"loaded {args.photos} photos, {n_tags} tags in {time.perf_counter() - t0:.1f}s;"
                f" {common} photos tagged {COMMON!r}"
            )
            one = {**lookups.search_params([COMMON], 0.0), "lim": 48, "off": 0}
            total = min(common, lookups.COUNT_CAP + 1)
            for title, query in (
                ("the Search page's query", lookups.search_sql("score", 1)),
                ("its match count (capped)", lookups.count_sql(1)),
            ):
                plan = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {query}", one).fetchall()
                print(f"\nEXPLAIN ANALYZE of {title}, tag={COMMON!r}, first page:")
                print("\n".join(r[0] for r in plan))
            (second,) = conn.execute(
                "SELECT tag FROM tags WHERE tag <> %s GROUP BY tag ORDER BY count(*) DESC LIMIT 1",
                (COMMON,),
            ).fetchone()
            two = {**lookups.search_params([COMMON, second], 0.0), "lim": 48, "off": 0}
            cases = [
                (f"{COMMON!r}, best first, page 1", lookups.search_sql("score", 1), one),
                (
                    f"{COMMON!r}, newest first, page 1",
                    lookups.search_sql("newest", 1, total),
                    one,
                ),
                (
                    f"{COMMON!r}, best first, page 100",
                    lookups.search_sql("score", 1),
                    {**one, "off": 48 * 99},
                ),
                (f"{COMMON!r}, min score 0.9", lookups.search_sql("score", 1), {**one, "min": 0.9}),
                (f"{COMMON!r}: count (up to 1,001)", lookups.count_sql(1), one),
                (f"{COMMON!r} AND {second!r}, page 1", lookups.search_sql("score", 2), two),
                (f"{COMMON!r} AND {second!r}: count", lookups.count_sql(2), two),
            ]
            print("\nserver time (EXPLAIN ANALYZE execution time, median of 7):")
            for label, query, params in cases:
                print(f"  {label:<44} {server_ms(conn, query, params):8.1f} ms")
            counts = lookups.tag_counts(conn)
            print("\nround trip from Python (median of 7):")
            rounds = [
                (
                    f"search_all([{COMMON!r}]): count + page 1",
                    lambda: lookups.search_all(conn, [COMMON]),
                    7,
                ),
                (
                    "tag counts (cloud + autocomplete; cached 30 s)",
                    lambda: lookups.tag_counts(conn),
                    3,
                ),
                (
                    "autocomplete 'ta' from the cached counts",
                    lambda: lookups.complete(counts, "ta"),
                    7,
                ),
            ]
            for label, fn, repeat in rounds:
                print(f"  {label:<44} {wall_ms(fn, repeat):8.1f} ms")
    finally:
        if not args.keep:
            with database.connect(admin, migrate_schema=False) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB))
                )


if __name__ == "__main__":
    main()
