"""Benchmark: similarity search by dot product against this machine's memory bandwidth.

MemSQL's claim (the seed): a DOT_PRODUCT scan runs at memory bandwidth, 50 GB/s / 4 KB =
12.5 M vectors/s per node. This measures, on this machine and in the same run:

1. memory bandwidth: ``a.sum()`` over a 2 GiB float32 array (one thread, then all cores)
   and a numpy ``X @ q`` float32 scan (OpenBLAS sgemv);
2. for each dimension and each VectorIndex mode (exact, fp16, int8, ivf, hnsw) at 100 k
   and 1 M vectors: single-query latency p50/p99 at top-10 (vectors/s, GB/s and the ratio
   to the measured bandwidth), batched throughput, recall@10 against exact, memory per
   million vectors and build time;
3. the psql query ``WHERE dot_product(feature, $1::real[]) > 0.9`` on 100 k rows, in a
   throw-away Postgres (PostgresDaemon, temp run dir, port offset 10000), loaded with COPY.

Data: synthetic L2-normalised float32 vectors around 1,000 cluster centres (a photo is its
centre plus noise of equal norm, so same-cluster photos score ~0.5); queries are stored
vectors plus noise (score ~0.94 with their source), i.e. "find this near-duplicate" with the
seed's 0.9 threshold. Vectors are generated in seeded chunks so each index is rebuilt from
the generator instead of keeping a second 5 GB copy.

    python bench/similarity.py --n 1000000 --dims 1280 1024 --write-md BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import resource
import shutil
import statistics
import struct
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import faiss  # noqa: E402

from autotag.similarity.index import VectorIndex  # noqa: E402

CHUNK = 50_000
CLUSTERS = 1000
SECTION = "## Similarity search (issue 5)"


def log(msg: str) -> None:
    print(msg, flush=True)


# -- machine -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "?"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    flags = open("/proc/cpuinfo").read()
    simd = [f for f in ("avx2", "avx512f", "avx512_vnni") if f" {f} " in flags]
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", open("/proc/meminfo").read()).group(1))
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "simd": simd,
        "ram_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "faiss": faiss.__version__,
        "faiss_threads": faiss.omp_get_max_threads(),
    }


def loadavg() -> str:
    return open("/proc/loadavg").read().split()[0]


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bandwidth(gib: float = 2.0, repeat: int = 5) -> dict[str, float]:
    """Read bandwidth in GB/s (1e9 bytes) from three scans of the same float32 array."""
    n = int(gib * 2**30 / 4)
    a = np.empty(n, dtype=np.float32)
    a.fill(1.0)  # touch every page before timing
    gb = a.nbytes / 1e9
    threads = os.cpu_count() or 1
    parts = np.array_split(a, threads)
    pool = ThreadPoolExecutor(threads)
    one = best_of(lambda: a.sum(), repeat)
    many = best_of(lambda: list(pool.map(np.sum, parts)), repeat)
    X = a[: (n // 1280) * 1280].reshape(-1, 1280)
    q = np.ones(1280, dtype=np.float32)
    gemv = best_of(lambda: X @ q, repeat)
    pool.shutdown()
    out = {
        "sum_1_thread": gb / one,
        "sum_all_threads": gb / many,
        "numpy_X_at_q": X.nbytes / 1e9 / gemv,
    }
    out["reference"] = max(out.values())
    return out


class Probe:
    """A 1 GiB array kept for the run: bandwidth re-measured next to each latency test, since
    the cores are shared and the load changes from minute to minute."""

    def __init__(self) -> None:
        self.a = np.ones(2**28, dtype=np.float32)
        self.X = self.a.reshape(-1, 1024)
        self.q = np.ones(1024, dtype=np.float32)

    def gb_s(self) -> float:
        gb = self.a.nbytes / 1e9
        return gb / min(best_of(self.a.sum, 3), best_of(lambda: self.X @ self.q, 3))


# -- data --------------------------------------------------------------------------------


class Data:
    """Seeded clustered vectors, generated chunk by chunk (never all in memory twice)."""

    def __init__(self, n: int, dim: int, queries: int, seed: int = 5) -> None:
        self.n, self.dim, self.seed = n, dim, seed
        rng = np.random.default_rng(seed)
        c = rng.standard_normal((CLUSTERS, dim), dtype=np.float32)
        self.centers = c / np.linalg.norm(c, axis=1, keepdims=True)
        first = min(n, CHUNK)  # sources in the first chunk: present at every index size
        pick = np.sort(rng.choice(first, queries, replace=False))
        base = self.rows(0, first)[pick]
        noise = rng.standard_normal(base.shape, dtype=np.float32) / np.sqrt(dim) * 0.35
        q = base + noise
        self.queries = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
        self.sources = pick

    def rows(self, start: int, stop: int) -> np.ndarray:
        assert start % CHUNK == 0 and stop - start <= CHUNK
        rng = np.random.default_rng((self.seed, self.dim, start // CHUNK))
        m = stop - start
        labels = rng.integers(0, CLUSTERS, m)
        x = self.centers[labels]
        x += rng.standard_normal((m, self.dim), dtype=np.float32) / np.float32(np.sqrt(self.dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x

    def chunks(self, start: int, stop: int):
        for s in range(start, stop, CHUNK):
            e = min(s + CHUNK, stop)
            yield [f"{i:012d}" for i in range(s, e)], self.rows(s, e)


# -- index benchmarks ----------------------------------------------------------------------


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def latency(index: VectorIndex, queries: np.ndarray, k: int = 10) -> tuple[list[float], list]:
    times, results = [], []
    index.search(queries[0], k)  # warm-up
    for q in queries:
        t = time.perf_counter()
        results.append(index.search(q, k))
        times.append(time.perf_counter() - t)
    return times, results


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def recall(results: list, truth: list) -> float:
    hit = sum(
        len({p for p, _ in r} & {p for p, _ in t}) for r, t in zip(results, truth, strict=True)
    )
    return hit / sum(len(t) for t in truth)


CODE_BYTES = {"exact": 4, "fp16": 2, "int8": 1, "ivf": 4, "hnsw": 4}


def measure(
    index: VectorIndex, data: Data, n: int, truth: dict, single_q: int, batch_q: int, probe: Probe
) -> dict[str, Any]:
    mode = index.mode
    qs = data.queries
    gc.collect()
    bw = probe.gb_s()
    times, single = latency(index, qs[:single_q])
    p50, p99 = pct(times, 50), pct(times, 99)
    t = time.perf_counter()
    batch = index.search(qs[:batch_q], 10)
    tb = time.perf_counter() - t
    row_bytes = CODE_BYTES[mode] * data.dim
    out: dict[str, Any] = {
        "mode": mode,
        "n": n,
        "p50_ms": p50 * 1e3,
        "p99_ms": p99 * 1e3,
        "qps_single": 1 / statistics.mean(times),
        "batch_q": batch_q,
        "batch_qps": batch_q / tb,
        "memory_per_million_gib": index.memory_bytes() / n * 1e6 / 2**30,
        "bw_gb_s": bw,
        "nn_found": float(
            np.mean([r[0][0] == f"{s:012d}" for r, s in zip(single, data.sources, strict=False)])
        ),
    }
    if mode in ("exact", "fp16", "int8"):
        out["single_vectors_per_s"] = n / p50
        out["single_gb_s"] = n * row_bytes / p50 / 1e9
        out["single_ratio_bw"] = out["single_gb_s"] / bw
        out["batch_vectors_per_s"] = n * batch_q / tb
        out["batch_effective_gb_s"] = n * row_bytes * batch_q / tb / 1e9
    if truth.get(n) is not None:
        out["recall_single"] = recall(single, truth[n][:single_q])
        out["recall_batch"] = recall(batch, truth[n][:batch_q])
    else:
        truth[n] = batch if len(batch) >= len(single) else single
        out["recall_single"] = out["recall_batch"] = 1.0
    return out


def bench_mode(
    mode: str, data: Data, sizes: list[int], truth: dict, args: argparse.Namespace, probe: Probe
) -> list[dict[str, Any]]:
    params: dict[str, Any] = {}
    if mode == "ivf":
        params = {"nlist": args.nlist, "nprobe": args.nprobe, "train_size": sizes[0]}
    if mode == "int8":
        params = {"train_size": 50_000}
    if mode == "hnsw":
        params = {"ef_search": args.ef_search}
    index = VectorIndex(data.dim, mode, **params)
    rows, done, built = [], 0, 0.0
    for n in sizes:
        if mode == "hnsw" and n > args.hnsw_max_n and data.dim not in args.hnsw_dims:
            log(f"  {mode}: skipping n={n:,} (--hnsw-max-n {args.hnsw_max_n:,})")
            continue
        t = time.perf_counter()
        for ids, x in data.chunks(done, n):
            index.add(ids, x)
        built += time.perf_counter() - t
        done = n
        single_q = args.queries if mode in ("ivf", "hnsw") or n <= 100_000 else args.queries_1m
        r = measure(index, data, n, truth, single_q, args.batch, probe)
        r["build_s"] = built
        r["load"] = loadavg()
        if mode == "exact" and n == sizes[-1]:
            # BLAS limited to one thread: what one core's scan gives.
            from threadpoolctl import threadpool_limits

            with threadpool_limits(1):
                times, _ = latency(index, data.queries[: min(20, single_q)])
            r["p50_ms_1_thread"] = pct(times, 50) * 1e3
        if mode == "fp16" and n == sizes[-1]:
            # faiss scans one query on one core; segments in turn = what faiss alone would do.
            store = index._store
            store._parallel = lambda nq: False
            times, _ = latency(index, data.queries[: min(20, single_q)])
            r["p50_ms_1_thread"] = pct(times, 50) * 1e3
            del store._parallel
        if mode == "ivf":
            r["nlist"] = index._store.index.nlist if index.active_mode == "ivf" else None
            r["nprobe"] = index.nprobe
        if mode == "hnsw":
            r["ef_search"] = index.ef_search
        rows.append(r)
        log("  " + fmt_row(r))
    del index
    gc.collect()
    return rows


def fmt_row(r: dict[str, Any]) -> str:
    s = (
        f"{r['mode']:<5} n={r['n']:>9,}  p50 {r['p50_ms']:8.2f} ms  p99 {r['p99_ms']:8.2f} ms  "
        f"recall@10 {r['recall_single']:.3f}/{r['recall_batch']:.3f}  "
        f"mem {r['memory_per_million_gib']:.2f} GiB/M  build {r['build_s']:.0f}s  "
        f"bw {r['bw_gb_s']:.1f} GB/s load {r['load']}"
    )
    if "single_gb_s" in r:
        s += (
            f"  1q {r['single_vectors_per_s'] / 1e6:.2f} Mvec/s {r['single_gb_s']:.1f} GB/s "
            f"({r['single_ratio_bw']:.0%} of bw)  batch {r['batch_vectors_per_s'] / 1e6:.1f} Mvec/s"
        )
    else:
        s += f"  batch {r['batch_qps']:.0f} q/s"
    return s


# -- Postgres ------------------------------------------------------------------------------

PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)


def copy_rows(ids: list[str], fs: str, x: np.ndarray) -> bytes:
    """Binary COPY rows (photo_id text, feature_set text, feature real[]) built with numpy."""
    m, d = x.shape
    fsb = fs.encode()
    dt = np.dtype(
        [
            ("nf", ">i2"),
            ("l1", ">i4"),
            ("id", "S64"),
            ("l2", ">i4"),
            ("fs", f"S{len(fsb)}"),
            ("l3", ">i4"),
            ("hdr", ">i4", 5),
            ("el", [("len", ">i4"), ("v", ">f4")], d),
        ]
    )
    rec = np.zeros(m, dtype=dt)
    rec["nf"] = 3
    rec["l1"] = 64
    rec["id"] = [i.encode() for i in ids]
    rec["l2"] = len(fsb)
    rec["fs"] = fsb
    rec["l3"] = 20 + 8 * d
    rec["hdr"] = [1, 0, 700, d, 1]
    rec["el"]["len"] = 4
    rec["el"]["v"] = x
    return rec.tobytes()


def free_offset(start: int, base_port: int = 5433) -> int:
    """First port offset (start, start+100, ...) whose Postgres port nobody listens on."""
    from autotag.ops.daemons.base import port_open

    offset = start
    while port_open("127.0.0.1", base_port + offset):
        offset += 100
    return offset


def bench_postgres(dim: int, rows: int, port_offset: int) -> dict[str, Any]:
    import hashlib

    import psycopg

    from autotag.config import load_settings
    from autotag.errors import AutotagError
    from autotag.ops import run_dir as run_dirs
    from autotag.ops.daemons.postgres import PostgresDaemon
    from autotag.ops.sql_functions import FALLBACK_SQL, install_sql_functions
    from autotag.storage import database

    port_offset = free_offset(port_offset)
    run_dir = Path(tempfile.mkdtemp(prefix="autotag-bench-sim-"))
    run_dirs.prepare(run_dir)  # private; the Postgres server (run as postgres) may pass through
    env = {**os.environ, "AUTOTAG_RUN_DIR": str(run_dir), "AUTOTAG_PORT_OFFSET": str(port_offset)}
    settings = load_settings(env)
    daemon = PostgresDaemon(settings)
    out: dict[str, Any] = {"rows": rows, "dim": dim}
    data = Data(rows, dim, 20, seed=11)
    fs = f"bench{dim}@1"
    try:
        daemon.start()
        with database.connect(settings.services, role="owner") as conn:  # schema, C function, DDL
            out["language"] = install_sql_functions(conn, settings)
            t = time.perf_counter()
            with conn.cursor() as cur:
                for start in range(0, rows, CHUNK):
                    stop = min(start + CHUNK, rows)
                    ids = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(start, stop)]
                    with cur.copy("COPY photos (photo_id, status) FROM STDIN") as cp:
                        for i in ids:
                            cp.write_row((i, "tagged"))
                    with cur.copy(
                        "COPY photo_vectors (photo_id, feature_set, feature) FROM STDIN (FORMAT binary)"
                    ) as cp:
                        cp.write(PGCOPY_HEADER)
                        cp.write(copy_rows(ids, fs, data.rows(start, stop)))
                        cp.write(struct.pack("!h", -1))
            conn.execute("VACUUM ANALYZE photo_vectors")
            out["copy_s"] = time.perf_counter() - t
            size = conn.execute("SELECT pg_total_relation_size('photo_vectors')").fetchone()[0]
            out["table_gib"] = size / 2**30
            q = data.queries[0].tolist()
            query = (
                "SELECT photo_id FROM photo_vectors WHERE dot_product(feature, %s::real[]) > 0.9"
            )
            topk = (
                "SELECT photo_id FROM photo_vectors "
                "ORDER BY dot_product(feature, %s::real[]) DESC LIMIT 10"
            )

            def timed(sql: str, params: tuple, repeat: int = 3) -> tuple[float, int]:
                conn.execute(sql, params).fetchall()  # warm the caches
                best, found = 1e9, 0
                for _ in range(repeat):
                    t = time.perf_counter()
                    found = len(conn.execute(sql, params).fetchall())
                    best = min(best, time.perf_counter() - t)
                return best, found

            out["threshold_s"], out["threshold_hits"] = timed(query, (q,))
            out["topk_s"], _ = timed(topk, (q,))
            conn.execute("SET max_parallel_workers_per_gather = 0")
            out["threshold_1core_s"], _ = timed(query, (q,))
            conn.execute("RESET max_parallel_workers_per_gather")
            plan = conn.execute("EXPLAIN " + query.replace("%s", "'{0}'"), ()).fetchall()
            out["plan"] = " / ".join(r[0].strip() for r in plan[:3])
            # Vectors stored inline (no TOAST): the layout a migration could choose.
            conn.execute(
                "CREATE TABLE pv_inline (photo_id text, feature real[]) "
                "WITH (toast_tuple_target = 8160)"
            )
            conn.execute("ALTER TABLE pv_inline ALTER COLUMN feature SET STORAGE MAIN")
            conn.execute("INSERT INTO pv_inline SELECT photo_id, feature FROM photo_vectors")
            conn.execute("VACUUM ANALYZE pv_inline")
            out["inline_gib"] = (
                conn.execute("SELECT pg_total_relation_size('pv_inline')").fetchone()[0] / 2**30
            )
            inline = query.replace("photo_vectors", "pv_inline")
            out["inline_threshold_s"], _ = timed(inline, (q,))
            conn.execute("SET max_parallel_workers_per_gather = 0")
            out["inline_threshold_1core_s"], _ = timed(inline, (q,))
            conn.execute("RESET max_parallel_workers_per_gather")
            # The plpgsql fallback, on a 2,000-row slice (it is ~100x slower).
            conn.execute("CREATE SCHEMA fallback")
            conn.execute("SET search_path = fallback, public")
            conn.execute(FALLBACK_SQL)
            conn.execute("RESET search_path")
            slice_sql = (
                "SELECT count(*) FROM (SELECT feature FROM pv_inline LIMIT 2000) t "
                "WHERE {}(feature, %s::real[]) > 0.9"
            )
            c_2k, _ = timed(slice_sql.format("public.dot_product"), (q,))
            sql_2k, _ = timed(slice_sql.format("fallback.dot_product"), (q,), repeat=1)
            out["fallback_rows_per_s"] = 2000 / sql_2k
            out["c_rows_per_s_2k"] = 2000 / c_2k
    except (psycopg.Error, AutotagError) as exc:
        out["error"] = str(exc).strip().splitlines()[0]
    finally:
        daemon.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
    bytes_per_row = dim * 4
    for key in (
        "threshold_s",
        "threshold_1core_s",
        "inline_threshold_s",
        "inline_threshold_1core_s",
    ):
        if key in out:
            out[key.replace("_s", "_rows_per_s")] = rows / out[key]
            out[key.replace("_s", "_gb_s")] = rows * bytes_per_row / out[key] / 1e9
    return out


# -- report --------------------------------------------------------------------------------


def markdown(m: dict, bw: dict, results: list[dict], pg: list[dict], args, started: str) -> str:
    lines = [
        SECTION,
        "",
        f"Measured by `python bench/similarity.py {' '.join(sys.argv[1:])}` on {started} "
        f"(one run; the 2 cores are shared with other engineers' jobs, so the load average "
        f"is given per row).",
        "",
        f"**Machine**: {m['nproc']} vCPU {m['cpu']} ({', '.join(m['simd'])}), "
        f"{m['ram_gib']} GiB RAM, Linux {m['kernel']}, Python {m['python']}, numpy {m['numpy']}, "
        f"faiss-cpu {m['faiss']} ({m['faiss_threads']} OpenMP threads).",
        "",
        "**Memory bandwidth** (2 GiB float32 array, best of 5, GB = 1e9 bytes): "
        f"`a.sum()` one thread {bw['sum_1_thread']:.1f} GB/s, all threads "
        f"{bw['sum_all_threads']:.1f} GB/s, numpy `X @ q` (sgemv) {bw['numpy_X_at_q']:.1f} GB/s. "
        f"Reference = the best, **{bw['reference']:.1f} GB/s**; at 1,280-d float32 (5,120 B) "
        f"that bounds a scan at {bw['reference'] * 1e9 / 5120 / 1e6:.2f} M vectors/s "
        f"(the seed's 50 GB/s node: 12.5 M/s at 4 KB).",
        "",
        "Data: clustered synthetic L2-normalised float32 vectors (1,000 centres, same-cluster "
        "score ~0.5); queries are stored vectors plus noise (score ~0.94 with their source). "
        f"Single-query latency over {args.queries} queries ({args.queries_1m} for the flat "
        f"modes at 1 M), top-10; batch = {args.batch} queries in one call; recall@10 against "
        "the exact mode's top-10. *GB/s* counts the bytes of the codes scanned (4/2/1 bytes "
        "per dimension); *bw GB/s* is the bandwidth re-measured (1 GiB `sum` / sgemv, best "
        "of 3) just before that row's queries, and *of bw* is single-query GB/s over it.",
        "",
        "| dim | mode | vectors | p50 ms | p99 ms | 1-query Mvec/s | 1-query GB/s | bw GB/s "
        "| of bw | batch Mvec/s (q/s) | recall@10 | GiB per M | build s | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        flat = "single_gb_s" in r
        batch = (
            f"{r['batch_vectors_per_s'] / 1e6:.1f} ({r['batch_qps']:.0f})"
            if flat
            else f"({r['batch_qps']:.0f})"
        )
        extra = ""
        if r["mode"] == "ivf":
            extra = f" nlist {r.get('nlist')}, nprobe {r.get('nprobe')}"
        if r["mode"] == "hnsw":
            extra = f" M 32, ef {r.get('ef_search')}"
        lines.append(
            f"| {r['dim']} | {r['mode']}{extra} | {r['n']:,} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | "
            + (
                f"{r['single_vectors_per_s'] / 1e6:.2f} | {r['single_gb_s']:.1f} | "
                f"{r['bw_gb_s']:.1f} | {r['single_ratio_bw']:.0%} | "
                if flat
                else f"– | – | {r['bw_gb_s']:.1f} | – | "
            )
            + f"{batch} | {r['recall_single']:.3f} | {r['memory_per_million_gib']:.2f} | "
            f"{r['build_s']:.0f} | {r['load']} |"
        )
    one = [r for r in results if "p50_ms_1_thread" in r]
    if one:
        lines += [
            "",
            "One core vs all cores for one query (exact: OpenBLAS limited to one thread; "
            "fp16: segments scanned in turn, which is what faiss alone does for one query):",
        ]
        for r in one:
            lines.append(
                f"- {r['mode']} {r['dim']}-d, {r['n']:,} vectors: p50 {r['p50_ms_1_thread']:.0f} "
                f"ms on one core, {r['p50_ms']:.0f} ms on {m['faiss_threads']}."
            )
    for p in pg:
        lines += [
            "",
            f"**psql `dot_product`** ({p['rows']:,} rows x {p['dim']}-d, {p.get('language')})",
        ]
        if "error" in p:
            lines.append(f"- failed: {p['error']}")
            continue
        lines += [
            f"- COPY load {p['copy_s']:.0f} s; table + TOAST {p['table_gib']:.2f} GiB.",
            f"- `WHERE dot_product(feature, $1::real[]) > 0.9`: {p['threshold_s'] * 1e3:.0f} ms "
            f"({p['threshold_rows_per_s'] / 1e6:.2f} M rows/s, {p['threshold_gb_s']:.2f} GB/s of "
            f"vectors) with parallel workers; {p['threshold_1core_s'] * 1e3:.0f} ms on one core. "
            f"Plan: {p['plan']}.",
            f"- `ORDER BY dot_product(..) DESC LIMIT 10`: {p['topk_s'] * 1e3:.0f} ms.",
            f"- Same rows stored inline (`STORAGE MAIN`, `toast_tuple_target = 8160`, "
            f"{p['inline_gib']:.2f} GiB): {p['inline_threshold_s'] * 1e3:.0f} ms "
            f"({p['inline_threshold_gb_s']:.2f} GB/s), one core "
            f"{p['inline_threshold_1core_s'] * 1e3:.0f} ms.",
            f"- plpgsql fallback: {p['fallback_rows_per_s']:,.0f} rows/s vs C "
            f"{p['c_rows_per_s_2k']:,.0f} rows/s on the same 2,000 rows.",
        ]
    return "\n".join(lines) + "\n"


def write_section(path: Path, text: str) -> None:
    """Replace (or append) only our section of BENCHMARKS.md."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    start = old.find(SECTION)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        nxt = old.find("\n## ", start + len(SECTION))
        new = old[:start] + text + ("\n" + old[nxt + 1 :] if nxt >= 0 else "")
    path.write_text(new)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dims", type=int, nargs="+", default=[1280, 1024])
    ap.add_argument("--modes", nargs="+", default=["exact", "fp16", "int8", "ivf", "hnsw"])
    ap.add_argument("--queries", type=int, default=200, help="single queries (latency)")
    ap.add_argument("--queries-1m", type=int, default=100, help="single queries, flat modes > 100k")
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--nlist", type=int, default=1024)
    ap.add_argument("--nprobe", type=int, default=32)
    ap.add_argument("--ef-search", type=int, default=256)
    ap.add_argument(
        "--hnsw-max-n", type=int, default=100_000, help="graph builds are slow: ~1 h/M here"
    )
    ap.add_argument(
        "--hnsw-dims", type=int, nargs="*", default=None, help="dims built to --n anyway"
    )
    ap.add_argument("--pg-rows", type=int, default=100_000)
    ap.add_argument("--pg-port-offset", type=int, default=10000)
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("--write-md", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also dump raw figures here")
    args = ap.parse_args()
    if args.hnsw_dims is None:
        args.hnsw_dims = args.dims[:1]

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    m = machine()
    log(f"machine: {m}")
    bw = bandwidth()
    log("bandwidth GB/s: " + ", ".join(f"{k} {v:.1f}" for k, v in bw.items()))
    sizes = sorted({min(100_000, args.n), args.n})
    probe = Probe()
    results: list[dict[str, Any]] = []
    for dim in args.dims:
        log(f"dim {dim}: generating queries (load {loadavg()})")
        data = Data(args.n, dim, max(args.queries, args.batch))
        truth: dict[int, Any] = {}
        modes = ["exact"] + [x for x in args.modes if x != "exact"]
        for mode in modes:
            log(f" mode {mode}")
            for r in bench_mode(mode, data, sizes, truth, args, probe):
                r["dim"] = dim
                results.append(r)
                if args.json:
                    args.json.write_text(json.dumps({"machine": m, "bw": bw, "rows": results}))
        del data, truth
        gc.collect()
    pg = []
    if not args.skip_pg:
        log(f"postgres: {args.pg_rows:,} rows x {args.dims[0]}")
        p = bench_postgres(args.dims[0], args.pg_rows, args.pg_port_offset)
        log(f"  {p}")
        pg.append(p)
    log(f"peak RSS {rss_gib():.1f} GiB")
    text = markdown(m, bw, results, pg, args, started)
    text += f"\nPeak RSS of the benchmark process: {rss_gib():.1f} GiB.\n"
    print(text)
    if args.write_md:
        write_section(args.write_md, text)
        log(f"wrote {args.write_md}")


if __name__ == "__main__":
    main()
