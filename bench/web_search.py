"""The Search page's queries on a big table: EXPLAIN ANALYZE and server times.

Loads N synthetic photos (default 100,000) with their current tags into a database of its
own on the running Postgres (``autotag cluster up postgres``), with the real schema
(migrations), then prints the plans (EXPLAIN ANALYZE, BUFFERS) of the Search page's queries
(``storage.tag_search``) for a common tag and its capped count, and for two tags (AND) best
first and newest first, common with common and common with rare; then the server time
(median of repeated runs) of those, of a deep page, a minimum score, three tags, a word naming
two tags, and of the tag counts behind the tag cloud and autocomplete.

Tags follow a Zipf law over a 2,000-word vocabulary (as real tags do), plus one common tag
("dog") on a third of the photos: the search the page must answer in < 300 ms.

    python bench/web_search.py                   # 100,000 photos
    python bench/web_search.py --photos 2000     # a quick check
    python bench/web_search.py --keep            # then --reuse: measure again, no reload
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from psycopg import sql

from autotag.config import settings
from autotag.storage import database, lookups, tag_search
from autotag.storage.terms import Term

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
    # What autovacuum does to a table after many inserts: statistics and the visibility map
    # (without it no index-only scan skips the heap).
    conn.execute("VACUUM ANALYZE photos")
    conn.execute("VACUUM ANALYZE tags")
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
    ap.add_argument(
        "--reuse", action="store_true", help="measure the database a --keep run left (no load)"
    )
    args = ap.parse_args()
    s = settings()
    # The owner role creates and loads the database (the application role may not); the
    # searches then run as the application role, as the web service's do.
    admin = s.override(postgres_db="postgres")
    bench = s.override(postgres_db=DB)
    if not args.reuse:
        with database.connect(admin.services, role="owner", migrate_schema=False) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB))
            )
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
    try:
        with database.connect(bench.services, role="owner") as conn:  # applies new migrations
            t0 = time.perf_counter()
            if args.reuse:
                conn.execute("VACUUM ANALYZE tags")
                (n_tags,) = conn.execute("SELECT count(*) FROM tags").fetchone()
            else:
                n_tags = load(conn, args.photos, args.tags_per_photo)
            loaded_s = time.perf_counter() - t0
        with database.connect(bench.services) as conn:
            (common,) = conn.execute(
                "SELECT count(*) FROM tags WHERE tag = %s", (COMMON,)
            ).fetchone()
            how = "reused" if args.reuse else f"loaded in {loaded_s:.1f}s"
            print(f"{n_tags} tags ({how}); {common} photos tagged {COMMON!r}")
            by_count = conn.execute(
                "SELECT tag, count(*) FROM tags WHERE tag <> %s GROUP BY tag"
                " ORDER BY count(*) DESC, tag",
                (COMMON,),
            ).fetchall()
            second, third = by_count[0][0], by_count[1][0]
            rare = next(tag for tag, n in by_count if n <= 100)
            print(
                f"second {second!r}: {by_count[0][1]} photos; third {third!r}: "
                f"{by_count[1][1]} photos; rare {rare!r}: {dict(by_count)[rare]} photos"
            )
            exact = tag_search.exact_terms
            dog = exact([COMMON])
            # One typed word naming two tags (a synonym): the several-tags path for one term.
            synonym = [Term(COMMON, {COMMON: "exact", rare: "synonym"})]

            def case(terms: list[Term], order: str = "score", **extra: Any) -> tuple[str, dict]:
                """The page query tag_search runs (chosen by the capped count), its params."""
                params = {**tag_search.params_for(terms, 0.0), "lim": 48, "off": 0, **extra}
                (total,) = conn.execute(tag_search.count_sql(terms), params).fetchone()
                return tag_search.sql_for(terms, order, total), params

            explained = [
                (f"{COMMON!r}, best first, page 1", case(dog)),  # the Search page's first ask
                (f"{COMMON!r}: count (up to 1,001)", (tag_search.count_sql(dog), case(dog)[1])),
                (f"{COMMON!r} AND {second!r}, best first", case(exact([COMMON, second]))),
                (
                    f"{COMMON!r} AND {second!r}: count (up to 1,001)",
                    (
                        tag_search.count_sql(exact([COMMON, second])),
                        case(exact([COMMON, second]))[1],
                    ),
                ),
                (
                    f"{COMMON!r} AND {second!r}, newest first",
                    case(exact([COMMON, second]), "newest"),
                ),
                (f"{COMMON!r} AND {rare!r}, best first", case(exact([COMMON, rare]))),
            ]
            for title, (query, params) in explained:
                plan = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {query}", params).fetchall()
                print(f"\nEXPLAIN ANALYZE of {title}:")
                print("\n".join(r[0] for r in plan))
            cases = [
                *explained,
                (f"{COMMON!r}, newest first, page 1", case(dog, "newest")),
                (f"{COMMON!r}, best first, page 100", case(dog, off=48 * 99)),
                (f"{COMMON!r}, min score 0.9", case(dog, min=0.9)),
                (f"{COMMON!r} AND {rare!r}, newest first", case(exact([COMMON, rare]), "newest")),
                (
                    f"{COMMON!r} AND {second!r} AND {third!r}",
                    case(exact([COMMON, second, third])),
                ),
                (f"{COMMON!r} or its synonym {rare!r}, best first", case(synonym)),
                (f"{COMMON!r} or its synonym {rare!r}, newest first", case(synonym, "newest")),
                (
                    f"{COMMON!r} or its synonym {rare!r} AND {second!r}",
                    case([*synonym, *exact([second])]),
                ),
            ]
            print("\nserver time (EXPLAIN ANALYZE execution time, median of 7):")
            for label, (query, params) in cases:
                print(f"  {label:<52} {server_ms(conn, query, params):8.1f} ms")
            counts = lookups.tag_counts(conn)
            print("\nround trip from Python (median of 7):")
            rounds = [
                (
                    f"tag_search({COMMON!r}): count + page 1",
                    lambda: tag_search.search_page(conn, dog),
                    7,
                ),
                (
                    f"tag_search({COMMON!r} AND {second!r}): page 1 + count",
                    lambda: tag_search.search_page(conn, exact([COMMON, second])),
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
        if not (args.keep or args.reuse):
            with database.connect(admin.services, role="owner", migrate_schema=False) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB))
                )


if __name__ == "__main__":
    main()
