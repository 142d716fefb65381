"""Similarity against a real Postgres: the SQL dot_product and the index kept in sync.

Runs in a private database (and run directory) on the session's test cluster, with the
real schema (autotag.storage.postgres migrations) and rows written by the DB writer's own code path.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from autotag.config import Settings
from autotag.contract import PhotoResult
from autotag.ops.sql_functions import dot_product_language, install_sql_functions
from autotag.similarity.service import SimilarityService, resolve_feature_set
from autotag.storage import credentials, database, writer

pytestmark = pytest.mark.services

FASHION = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
DB = "autotag_similarity_test"
FS = "fmnist@1"  # a feature set of our own: centred, normalised Fashion-MNIST pixels


def pid(n: int | str) -> str:
    return hashlib.sha256(f"photo-{n}".encode()).hexdigest()


def fashion_vectors(n: int) -> np.ndarray:
    if not FASHION.is_file():
        pytest.skip(f"{FASHION} not installed")
    with gzip.open(FASHION) as fh:
        raw = fh.read()
    x = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 784)[:n].astype(np.float32)
    x -= x.mean(axis=0)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def sim_settings(postgres_service: Settings) -> Iterator[Settings]:
    """The test cluster, but a fresh database and run directory of our own."""
    with database.connect(
        postgres_service.services, role="owner", migrate_schema=False, dbname="postgres"
    ) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
    run_dir = postgres_service.run_dir / "similarity"
    run_dir.mkdir(exist_ok=True)
    run_dir.chmod(0o755)
    secrets = credentials.secrets_dir(postgres_service.run_dir)
    shutil.copytree(secrets, credentials.secrets_dir(run_dir), dirs_exist_ok=True)
    yield postgres_service.override(postgres_db=DB, run_dir=run_dir)


@pytest.fixture(scope="module")
def conn(sim_settings: Settings) -> Iterator[psycopg.Connection]:
    # The owner migrates the schema and installs dot_product, as `autotag cluster up` does.
    with database.connect(sim_settings.services, role="owner") as c:
        yield c


def write(conn, rows, feature_set=FS, model="m1", tags=None) -> None:
    """Store photos the way the DB writer does (photos + tags + vectors, seq bumped)."""
    results = [
        PhotoResult(
            photo_id=p,
            status="tagged",
            model_version=model,
            feature_set=feature_set,
            tags=(tags or {}).get(p, [("thing", 0.5)]),
            vector=v,
        )
        for p, v in rows
    ]
    writer.write_results(conn, results)


@pytest.fixture(scope="module")
def loaded(conn) -> tuple[list[str], np.ndarray]:
    x = fashion_vectors(1200)
    ids = [pid(i) for i in range(1000)]
    tags = {
        p: [("shoe" if i % 3 == 0 else "shirt", 0.9), ("thing", 0.2)] for i, p in enumerate(ids)
    }
    for start in range(0, 1000, 250):
        chunk = list(zip(ids[start : start + 250], x[start : start + 250], strict=True))
        write(conn, chunk, tags=tags)
    return ids, x


# -- SQL -----------------------------------------------------------------------------------


def test_install_is_idempotent_and_compiled(conn, sim_settings: Settings) -> None:
    assert install_sql_functions(conn, sim_settings) == "c"
    assert install_sql_functions(conn, sim_settings) == "c"
    assert dot_product_language(conn) == "c"
    libs = list((sim_settings.run_dir / "lib").glob("autotag_dot_product-*.so"))
    assert len(libs) == 1


def test_sql_dot_product_equals_numpy(conn, sim_settings, loaded) -> None:
    ids, x = loaded
    install_sql_functions(conn, sim_settings)
    q = x[1100]
    rows = conn.execute(
        "SELECT photo_id, dot_product(feature, %s::real[]) FROM photo_vectors "
        "WHERE feature_set = %s",
        (q.tolist(), FS),
    ).fetchall()
    got = dict(rows)
    want = x[:1000] @ q
    assert len(got) == 1000
    np.testing.assert_allclose([got[p] for p in ids], want, atol=1e-5)
    # The seed's form: WHERE dot_product(feature, $1::real[]) > threshold.
    threshold = float(np.sort(want)[-20] + np.sort(want)[-21]) / 2
    above = conn.execute(
        "SELECT photo_id FROM photo_vectors WHERE dot_product(feature, %s::real[]) > %s",
        (q.tolist(), threshold),
    ).fetchall()
    assert {r[0] for r in above} == {ids[i] for i in np.flatnonzero(want > threshold)}
    assert len(above) == 20


@pytest.mark.parametrize("prefer_c", [True, False])
def test_sql_errors_are_clear(conn, sim_settings, prefer_c: bool) -> None:
    try:
        assert install_sql_functions(conn, sim_settings, prefer_c=prefer_c) == (
            "c" if prefer_c else "plpgsql"
        )
        with pytest.raises(
            psycopg.errors.ArraySubscriptError, match=r"dimension mismatch \(2 vs 3\)"
        ):
            conn.execute("SELECT dot_product('{1,2}'::real[], '{1,2,3}'::real[])")
        with pytest.raises(psycopg.errors.NullValueNotAllowed, match="NULL"):
            conn.execute("SELECT dot_product('{1,NULL}'::real[], '{1,2}'::real[])")
        # STRICT: a NULL array gives NULL, an empty pair gives 0.
        assert conn.execute("SELECT dot_product(NULL::real[], '{1}'::real[])").fetchone() == (None,)
        assert conn.execute("SELECT dot_product('{}'::real[], '{}'::real[])").fetchone() == (0.0,)
        value = conn.execute(
            "SELECT dot_product(%s::real[], %s::real[])", ([0.5] * 37, [2.0] * 37)
        ).fetchone()[0]
        assert value == pytest.approx(37.0)
    finally:
        install_sql_functions(conn, sim_settings)


def test_fallback_when_the_build_fails(conn, sim_settings, monkeypatch, caplog) -> None:
    from autotag.ops import sql_functions as sqlfuncs

    def broken(*args, **kwargs):
        raise sqlfuncs.BuildError("gcc not found")

    monkeypatch.setattr(sqlfuncs, "build_dot_product", broken)
    with caplog.at_level("WARNING"):
        assert install_sql_functions(conn, sim_settings) == "plpgsql"
    assert "plpgsql fallback" in caplog.text and "gcc not found" in caplog.text
    assert conn.execute("SELECT dot_product('{3,4}'::real[], '{3,4}'::real[])").fetchone() == (
        25.0,
    )
    monkeypatch.undo()
    assert install_sql_functions(conn, sim_settings) == "c"


# -- the service ---------------------------------------------------------------------------


def test_feature_set_names_resolve_like_the_bolt_writes_them() -> None:
    name, dim = resolve_feature_set("cnn")
    assert name.startswith("cnn@") and dim == 1280
    assert resolve_feature_set(FS) == (FS, None)


def test_load_search_and_current_tags(conn, sim_settings, loaded) -> None:
    ids, x = loaded
    with SimilarityService(sim_settings.services, "exact", FS) as svc:
        svc.load()
        assert len(svc) == 1000 and svc.loaded_from == "postgres"
        results = svc.similar_to_photo(ids[5], top=5)
        assert ids[5] not in [r["photo_id"] for r in results]  # itself excluded
        scores = x[:1000] @ x[5]
        scores[5] = -9
        want = [ids[i] for i in np.argsort(-scores)[:5]]
        assert [r["photo_id"] for r in results] == want
        np.testing.assert_allclose(
            [r["score"] for r in results], np.sort(scores)[::-1][:5], atol=1e-5
        )
        tag = "shoe" if want[0] in ids[::3] else "shirt"
        assert results[0]["tags"][0] == {"tag": tag, "score": pytest.approx(0.9)}
        # A unique id prefix works; --tag keeps only photos currently tagged so.
        shoes = svc.similar_to_photo(ids[5][:12], top=10, tag="shoe")
        assert len(shoes) == 10
        assert all(r["photo_id"] in set(ids[::3]) for r in shoes)
        # Threshold semantics: score > min_score only.
        above = svc.similar(x[5], top=1000, min_score=0.8)
        assert {r["photo_id"] for r in above} == {
            ids[i] for i in np.flatnonzero(x[:1000] @ x[5] > 0.8)
        }


def test_tags_of_an_old_model_version_are_not_current(conn, sim_settings, loaded) -> None:
    ids, x = loaded
    p = ids[7]
    write(conn, [(p, x[7])], model="m2", tags={p: [("boot", 0.95)]})  # re-tagged by m2
    with SimilarityService(sim_settings.services, "exact", FS) as svc:
        tags = svc.current_tags([p])[p]
        assert tags == [{"tag": "boot", "score": pytest.approx(0.95)}]
        hits = svc.similar(x[7], top=1, tag="boot")
        assert [h["photo_id"] for h in hits] == [p]
        assert p not in {h["photo_id"] for h in svc.similar(x[7], top=50, tag="shirt")}


def test_refresh_applies_only_new_and_changed_rows(conn, sim_settings, loaded) -> None:
    ids, x = loaded
    with SimilarityService(sim_settings.services, "exact", FS) as svc:
        svc.load()
        before = len(svc)
        assert svc.refresh() == 0  # nothing changed
        new = [(pid(f"new{i}"), x[1000 + i]) for i in range(3)]
        write(conn, new)
        moved = ids[20]
        write(conn, [(moved, x[1010])])  # photo 20's vector changes
        same = {ids[21]: [("shoe", 0.9), ("thing", 0.2)]}
        write(conn, [(ids[21], x[21])], tags=same)  # rewritten unchanged: seq not bumped
        assert svc.refresh() == 4
        assert len(svc) == before + 3
        assert svc.similar(x[1010], top=1)[0]["photo_id"] == moved
        assert svc.index.search(x[1001], 1)[0][0] == pid("new1")
        np.testing.assert_allclose(svc.index.vector(moved), x[1010], atol=1e-7)
        assert svc.refresh() == 0


def test_refresh_catches_rows_committed_out_of_seq_order(conn, sim_settings, loaded) -> None:
    """A writer that drew its seq before others but commits after them is still seen."""
    ids, x = loaded
    (early,) = conn.execute("SELECT nextval('photo_vectors_seq_seq')").fetchone()
    write(conn, [(pid("later"), x[1051])])  # commits with a seq above `early`
    with SimilarityService(sim_settings.services, "exact", FS) as svc:
        svc.load()
        assert svc.high_seq > early
        late = pid("late")
        conn.execute("ALTER TABLE photo_vectors DISABLE TRIGGER photo_vectors_bump_seq")
        try:
            conn.execute(
                "INSERT INTO photos (photo_id, status, model_version) VALUES (%s, 'tagged', 'm1')",
                (late,),
            )
            conn.execute(
                "INSERT INTO photo_vectors (photo_id, feature_set, model_version, feature, seq) "
                "VALUES (%s, %s, 'm1', %s::real[], %s)",
                (late, FS, x[1050].tolist(), early),
            )
        finally:
            conn.execute("ALTER TABLE photo_vectors ENABLE TRIGGER photo_vectors_bump_seq")
        assert svc.refresh() == 1
        assert svc.index.search(x[1050], 1)[0][0] == late


@pytest.mark.parametrize("mode", ["int8", "hnsw"])
def test_persisted_index_reload_catches_up(conn, sim_settings, loaded, mode: str) -> None:
    ids, x = loaded
    with SimilarityService(sim_settings.services, mode, FS, persist=True, train_size=100) as svc:
        svc.load()
        assert svc.loaded_from == "postgres" and (svc.index_dir / "meta.json").is_file()
        count = len(svc)
    gone = pid("gone")
    write(conn, [(gone, x[1060])])
    conn.execute("DELETE FROM photo_vectors WHERE photo_id = %s", (gone,))
    extra, row = pid(f"after-save-{mode}"), 1070 + ["int8", "hnsw"].index(mode)
    write(conn, [(extra, x[row])])
    conn.execute("DELETE FROM photo_vectors WHERE photo_id = %s", (ids[30],))
    try:
        with SimilarityService(
            sim_settings.services, mode, FS, persist=True, train_size=100
        ) as again:
            again.load()
            assert again.loaded_from == str(again.index_dir)
            assert len(again) == count  # +1 written, -1 deleted
            assert extra in again.index and ids[30] not in again.index
            assert again.index.search(x[row], 1)[0][0] == extra
    finally:
        write(conn, [(ids[30], x[30])])


def test_duplicates_and_cli(conn, sim_settings, loaded, monkeypatch) -> None:
    ids, x = loaded
    a, b = pid("dup-a"), pid("dup-b")
    write(conn, [(a, x[1100]), (b, x[1100])])  # byte-identical vectors
    env = {
        "AUTOTAG_POSTGRES_DB": DB,
        "AUTOTAG_RUN_DIR": str(sim_settings.run_dir),
        "AUTOTAG_PORT_OFFSET": str(sim_settings.services.port_offset),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    from autotag.cli import cli

    runner = CliRunner()
    out = runner.invoke(
        cli,
        ["duplicates", "--min-score", "0.999", "--feature-set", FS, "--json"],
        catch_exceptions=False,
    )
    assert out.exit_code == 0, out.output
    groups = json.loads(out.output)["groups"]
    assert {tuple(g["photo_ids"]) for g in groups} >= {tuple(sorted([a, b]))}

    args = ["similar", a[:10], "--top", "3", "--feature-set", FS, "--json"]
    out = runner.invoke(cli, args, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    payload = json.loads(out.output)
    assert payload["query"] == {"photo_id": a}
    assert payload["results"][0]["photo_id"] == b and payload["results"][0]["score"] > 0.9999

    out = runner.invoke(cli, ["similar", a, "--feature-set", FS, "--min-score", "0.99"])
    assert out.exit_code == 0 and b in out.output

    out = runner.invoke(cli, ["sql-functions"])
    assert out.exit_code == 0 and "C (SIMD)" in out.output


def test_similar_to_a_file_already_stored_uses_its_vector(
    conn, sim_settings, loaded, tmp_path
) -> None:
    ids, x = loaded
    photo = tmp_path / "photo.bin"
    photo.write_bytes(b"not really a jpeg, but its sha256 is a stored photo id")
    p = hashlib.sha256(photo.read_bytes()).hexdigest()
    write(conn, [(p, x[1080])])

    def no_model(path: Path) -> np.ndarray:
        raise AssertionError(f"{path} is stored: it must not be featurized")

    with SimilarityService(sim_settings.services, "exact", FS) as svc:
        svc.load()
        hits = svc.similar_to_file(photo, no_model, top=1)
    assert hits[0]["photo_id"] == p and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_similar_to_a_new_file_uses_the_callers_featurizer(
    conn, sim_settings, loaded, tmp_path
) -> None:
    ids, x = loaded
    photo = tmp_path / "new.bin"
    photo.write_bytes(b"a file the system has never seen")
    seen: list[Path] = []

    def featurize(path: Path) -> np.ndarray:
        seen.append(path)
        return x[5]

    with SimilarityService(sim_settings.services, "exact", FS) as svc:
        svc.load()
        hits = svc.similar_to_file(str(photo), featurize, top=1)
    assert seen == [photo]
    assert hits[0]["photo_id"] == ids[5] and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_unknown_photo_is_a_clear_error(conn, sim_settings, loaded) -> None:
    from autotag.errors import AutotagError

    with SimilarityService(sim_settings.services, "exact", FS) as svc:
        with pytest.raises(AutotagError, match="has no 'fmnist@1' vector"):
            svc.similar_to_photo("f" * 64)
