"""The settings loader: sections from config.json and the environment, checked at load."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autotag import config
from autotag.cli import main
from autotag.config import (
    KEYS,
    SECTIONS,
    ServiceSettings,
    Settings,
    TaggingSettings,
    load_settings,
)
from autotag.errors import AutotagError, ConfigError


def project(tmp_path: Path, section: dict[str, Any] | None = None) -> dict[str, str]:
    """An environment whose project (AUTOTAG_HOME) has this "autotag" section in config.json."""
    doc: dict[str, Any] = {"serializer": "json"}
    if section is not None:
        doc["autotag"] = section
    (tmp_path / "config.json").write_text(json.dumps(doc))
    return {"AUTOTAG_HOME": str(tmp_path)}


def test_defaults_fill_every_section(tmp_path: Path) -> None:
    s = load_settings(project(tmp_path))
    assert s.run_dir == tmp_path / "run" and s.models_dir == tmp_path / "models"
    assert s.services.redis_port == 6380 and s.queue.max_attempts == 3
    assert s.limits.max_file_bytes == 50 * 1024 * 1024 and s.tagging.feature_set == "cnn"
    assert s.writer.db_batch_size == 64 and s.video.segment_secs == 10.0
    # The sections that need a path carry it.
    assert s.services.run_dir == s.run_dir and s.services.secrets_dir == s.run_dir / "secrets"
    assert s.tagging.model_dirs == s.model_dirs and s.tagging.models_dir == s.models_dir


def test_every_key_belongs_to_one_section() -> None:
    for name, cls in SECTIONS.items():
        assert isinstance(getattr(Settings(Path("/h"), Path("/r"), Path("/m")), name), cls)
    assert KEYS["redis_port"] == "services" and KEYS["max_attempts"] == "queue"
    assert KEYS["db_flush_secs"] == "writer" and KEYS["run_dir"] == ""
    assert "home" not in KEYS  # AUTOTAG_HOME or the checkout, never config.json
    for name, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if not f.metadata.get("derived"):  # derived: copied from the top-level paths
                assert KEYS[f.name] == name, f.name


def test_a_section_from_config_json_flat_or_nested(tmp_path: Path) -> None:
    env = project(
        tmp_path,
        {
            "run_dir": "state",
            "redis_port": 6390,
            "max_attempts": "5",
            "reduced_decode": False,
            "worker_ports": [7700, 7701, 7702],
            "tagging": {"max_tags": 3, "min_tag_score": 0.2},
        },
    )
    s = load_settings(env)
    assert s.run_dir == tmp_path / "state"  # relative to the project
    assert s.services.redis_port == 6390 and s.services.worker_ports == (7700, 7701, 7702)
    assert s.queue.max_attempts == 5
    assert (s.tagging.max_tags, s.tagging.min_tag_score, s.tagging.reduced_decode) == (
        3,
        0.2,
        False,
    )


def test_a_section_from_the_environment_over_config_json(tmp_path: Path) -> None:
    env = project(tmp_path, {"services": {"redis_port": 6390}, "db_batch_size": 8})
    s = load_settings(
        {
            **env,
            "AUTOTAG_REDIS_PORT": "6400",
            "AUTOTAG_PORT_OFFSET": "1000",
            "AUTOTAG_WORKER_PORTS": "6800, 6801",
            "AUTOTAG_REDUCED_DECODE": "no",
            "AUTOTAG_DB_FLUSH_SECS": "0.5",
            "AUTOTAG_RUN_DIR": "/var/tmp/autotag-run",
        }
    )
    assert s.services.port(s.services.redis_port) == 7400
    assert s.services.ports["worker1"] == 7801
    assert s.tagging.reduced_decode is False
    assert (s.writer.db_batch_size, s.writer.db_flush_secs) == (8, 0.5)  # file, then env
    assert s.run_dir == Path("/var/tmp/autotag-run") == s.services.run_dir


@pytest.mark.parametrize(
    "env, message",
    [
        ({"AUTOTAG_REDIS_PORT": "abc"}, "AUTOTAG_REDIS_PORT: 'abc' is not an integer"),
        ({"AUTOTAG_REDIS_PORT": "70000"}, "AUTOTAG_REDIS_PORT: '70000' is not a port (1-65535)"),
        ({"AUTOTAG_MAX_ATTEMPTS": "0"}, "AUTOTAG_MAX_ATTEMPTS: '0' must be at least 1"),
        ({"AUTOTAG_DB_FLUSH_SECS": "nan"}, "AUTOTAG_DB_FLUSH_SECS: 'nan' is not a number"),
        ({"AUTOTAG_MIN_TAG_SCORE": "2"}, "AUTOTAG_MIN_TAG_SCORE: '2' must be between 0.0 and 1.0"),
        ({"AUTOTAG_REDUCED_DECODE": "maybe"}, "AUTOTAG_REDUCED_DECODE: 'maybe' is not true or false"),
        ({"AUTOTAG_WORKER_PORTS": "6700,x"}, "AUTOTAG_WORKER_PORTS: '6700,x' is not a list of integers"),
        ({"AUTOTAG_STREAM": " "}, "AUTOTAG_STREAM: ' ' must not be empty"),
        (
            {"AUTOTAG_CLUSTER_NETWORK": "10.0.0/33"},
            "AUTOTAG_CLUSTER_NETWORK: '10.0.0/33' is not a network in CIDR form (e.g. 10.20.0.0/24)",
        ),
        (
            {"AUTOTAG_PORT_OFFSET": "64000"},
            "AUTOTAG_PORT_OFFSET: port_offset 64000 puts zookeeper_port at 66181, outside 1-65535",
        ),
        ({"AUTOTAG_HTTP_PORT": "8091"}, "AUTOTAG_HTTP_PORT: http_port would be port 8091, as blob_port is"),
    ],
)  # fmt: skip
def test_a_bad_value_is_one_line_naming_the_variable(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**project(tmp_path), **env})
    assert str(caught.value) == message
    assert isinstance(caught.value, AutotagError)


def test_a_bad_value_in_config_json_names_the_key_and_file(tmp_path: Path) -> None:
    env = project(tmp_path, {"queue": {"max_attempts": "three"}})
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    cfg = tmp_path / "config.json"
    assert str(caught.value) == f"autotag.queue.max_attempts in {cfg}: 'three' is not an integer"
    with pytest.raises(ConfigError, match=r"autotag.host in .*: 127 is not a string"):
        load_settings(project(tmp_path, {"host": 127}))


def test_unknown_keys_in_config_json_are_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    with pytest.raises(ConfigError) as caught:
        load_settings(project(tmp_path, {"redis_prot": 6390}))
    assert str(caught.value) == (
        f"autotag.redis_prot in {cfg}: unknown setting (did you mean redis_port?)"
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(project(tmp_path, {"queue": {"redis_port": 6390}}))
    assert str(caught.value) == (
        f"autotag.queue.redis_port in {cfg}: unknown setting of section queue "
        "(redis_port belongs to services)"
    )
    with pytest.raises(ConfigError, match="redis_port is given twice"):
        load_settings(project(tmp_path, {"redis_port": 1, "services": {"redis_port": 2}}))
    with pytest.raises(ConfigError, match="not valid JSON"):
        cfg.write_text("{")
        load_settings({"AUTOTAG_HOME": str(tmp_path)})
    # Unknown AUTOTAG_* variables are someone else's (tests, benchmarks): not errors.
    load_settings({**project(tmp_path), "AUTOTAG_NOT_A_SETTING": "1"})


def test_override_puts_each_key_in_its_section(tmp_path: Path) -> None:
    s = load_settings(project(tmp_path))
    t = s.override(redis_port=7000, max_attempts=1, run_dir=tmp_path / "other")
    assert (t.services.redis_port, t.queue.max_attempts) == (7000, 1)
    assert t.services.run_dir == tmp_path / "other"  # kept in step with run_dir
    assert (s.services.redis_port, s.queue.max_attempts) == (6380, 3)
    with pytest.raises(TypeError, match="no setting named 'redis_prot'"):
        s.override(redis_prot=1)


def test_sections_stand_alone() -> None:
    services = ServiceSettings(host="10.0.0.1", redis_host="redis", port_offset=10)
    assert services.redis_address == "redis" and services.postgres_address == "10.0.0.1"
    assert services.port(services.postgres_port) == 5443
    with pytest.raises(ConfigError, match="no model_dirs"):
        _ = TaggingSettings().models_dir


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    config.settings.cache_clear()
    yield
    config.settings.cache_clear()


def test_the_cli_prints_the_one_line_and_exits_1(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fresh_settings: None,
) -> None:
    for key, value in project(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AUTOTAG_REDIS_PORT", "abc")
    with pytest.raises(SystemExit) as exited:
        main(["url"])
    assert exited.value.code == 1
    assert capsys.readouterr().err == "autotag: AUTOTAG_REDIS_PORT: 'abc' is not an integer\n"
