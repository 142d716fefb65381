"""Which SQL a search uses, and the parameters it binds: pure logic, no database."""

from __future__ import annotations

import pytest

from autotag.storage import tag_search
from autotag.storage.terms import Term


def test_one_tag_walks_the_index_and_anything_else_joins_terms() -> None:
    dog = tag_search.exact_terms([" Dog "])
    assert dog == [Term("dog", {"dog": "exact"})]
    assert tag_search.sql_for(dog, "score") is tag_search._ONE_TAG_BEST
    assert tag_search.sql_for(dog, "newest", total=10) is tag_search._ONE_TAG_SPARSE_NEWEST
    assert tag_search.sql_for(dog, "newest", total=10_000) is tag_search._ONE_TAG_DENSE_NEWEST
    assert tag_search.count_sql(dog) is tag_search.ONE_TAG_COUNT
    two = tag_search.exact_terms(["grass", "dog", "DOG"])
    assert [t.text for t in two] == ["dog", "grass"]  # deduplicated, in a stable order
    sql = tag_search.sql_for(two, "newest")  # few matches: join the terms, sort
    assert "m1.photo_id = m0.photo_id" in sql and "p.uploaded_at DESC" in sql
    assert "DISTINCT ON" not in sql  # one tag per term: one row per photo already
    walk = tag_search.sql_for(two, "newest", total=10_000)  # many: walk photos newest first
    assert "FROM photos p" in walk and walk.count("CROSS JOIN LATERAL") == 2
    plural = [Term("dogs", {"dog": "plural", "hound": "synonym"})]  # one term, three tags
    best = tag_search.sql_for(plural, "score")
    assert best.count("ORDER BY t.score DESC, t.photo_id LIMIT") == 3  # each tag's walk
    assert "DISTINCT ON (x.photo_id, x.mv)" in tag_search.sql_for([*plural, *dog], "score")
    with pytest.raises(ValueError, match="order must be one of"):
        tag_search.sql_for(dog, "random")


def test_params_name_each_terms_tags_with_their_match_rank() -> None:
    terms = [Term("dogs", {"dog": "plural", "hound": "synonym"}), Term("beach")]
    params = tag_search.params_for(terms, 0.25)
    assert params["a0"] == ["dogs", "dog", "hound"] and params["r0"] == [0, 1, 2]
    assert params["a1"] == ["beach"] and params["r1"] == [0]
    assert params["min"] == 0.25 and params["tag"] == "dogs"
    assert (params["n0_1"], params["k0_1"], params["n0_2"], params["k0_2"]) == (
        "dog",
        1,
        "hound",
        2,
    )
    assert (params["n1_0"], params["k1_0"]) == ("beach", 0)
