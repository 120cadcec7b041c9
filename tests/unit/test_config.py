"""The config schema, the example file, and one-line errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from panfs import config
from panfs.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"


def _keys(data: dict[str, object], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in data.items():
        if isinstance(v, dict) and f"{prefix}{k}" not in config.SCHEMA:  # a map-valued key
            out |= _keys(v, f"{prefix}{k}.")
        else:
            out.add(f"{prefix}{k}")
    return out


def test_example_parses_and_sets_its_values() -> None:
    cfg = config.load(EXAMPLE)
    assert cfg["upload.part_size"] == 16 * config.MiB
    assert cfg["cache.max_size"] == 10 * config.GiB
    assert cfg["remote.drive"] == "default"
    assert not cfg.embedded


def test_example_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    # commented-out keys count as documented
    for key in ("account_file", "dir", "file"):
        text = text.replace(f"# {key}:", f"{key}:")
    uncommented = yaml.safe_load(text)
    assert _keys(uncommented) == set(config.SCHEMA)


def test_no_file_means_embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    cfg = config.load()
    assert cfg.embedded
    assert cfg["upload.part_size"] == 16 * config.MiB


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("upload:\n  part_sise: 8MiB\n", ["unknown key 'upload.part_sise'", "upload.part_size"]),
        ("upload:\n  part_size: huge\n", ["upload.part_size", "not a size"]),
        ("upload:\n  part_size: 1KiB\n", ["upload.part_size", "100KiB"]),
        ("remote:\n  endpoint: http://x\n", ["remote.client_id is missing"]),
        ("remote: [1, 2\n", ["not valid YAML"]),
        ("upload:\n  concurrency: 0\n", ["upload.concurrency"]),
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path: Path, text: str, words: list[str]) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as info:
        config.load(p)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(p) in msg
    for w in words:
        assert w in msg


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        config.load(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("8MiB", 8 << 20), ("16 MiB", 16 << 20), ("1GiB", 1 << 30), (4096, 4096), ("10MB", 10**7)],
)
def test_parse_size(value: object, expected: int) -> None:
    assert config.parse_size(value) == expected


def test_typed_sections_cover_every_key_once() -> None:
    """Every SCHEMA key is exactly one field of one typed section, with its one default."""
    from dataclasses import fields

    cfg = config.from_mapping({})
    covered = set()
    for section, cls in config._SECTION_TYPES.items():
        obj = getattr(cfg, section)
        assert isinstance(obj, cls)
        for f in fields(cls):
            key = f"{section}.{f.name}"
            assert getattr(obj, f.name) == config.SCHEMA[key].default
            covered.add(key)
    assert covered == set(config.SCHEMA)


def test_state_cache_and_log_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "st"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "ca"))
    default = config.from_mapping({})
    assert default.state_dir == tmp_path / "st" / "panfs"
    assert default.cache_dir == tmp_path / "ca" / "panfs"
    assert default.log_file == tmp_path / "st" / "panfs" / "panfs.log"
    # only cache.dir set: the one folder of earlier versions keeps holding both
    legacy = config.from_mapping({"cache": {"dir": str(tmp_path / "c")}})
    assert legacy.state_dir == legacy.cache_dir == tmp_path / "c"
    both = config.from_mapping(
        {"cache": {"dir": str(tmp_path / "c")}, "state": {"dir": str(tmp_path / "s")},
         "log": {"level": "debug", "max_size": "1MiB"}}
    )  # fmt: skip
    assert (both.state_dir, both.cache_dir) == (tmp_path / "s", tmp_path / "c")
    assert (both.log.level, both.log.max_size) == ("DEBUG", 1 << 20)


def test_config_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_bytes(b"upload:\n  part_size: 8MiB\n# caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        config.load(p)
    assert str(info.value) == f"{p}: not UTF-8 text (byte 0xe9 on line 3); save it as UTF-8"
