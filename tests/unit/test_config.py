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
    uncommented = yaml.safe_load(text.replace("# account_file:", "account_file:"))
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
