"""Property tests: part planning, the one response parser, and the clean cache's ranges."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from panfs.clean_cache import Entry, merge
from panfs.config import parse_size
from panfs.errors import RemoteError
from panfs.remote.responses import classify, classify_oss
from panfs.upload_session import MAX_PARTS, part_sizes, plan_part_size

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40


@given(size=st.integers(0, 50 * TiB), wanted=st.integers(100 * KiB, 5 * GiB))
def test_part_plan_covers_the_file_in_at_most_10000_parts(size: int, wanted: int) -> None:
    part = plan_part_size(size, wanted)
    sizes = part_sizes(size, part)
    assert part >= wanted
    assert len(sizes) <= MAX_PARTS
    assert sum(sizes) == size
    assert all(s == part for s in sizes[:-1])  # offsets follow from the nominal size
    assert 0 < sizes[-1] <= part or size == 0


@settings(max_examples=300)
@given(
    status=st.integers(100, 599),
    body=st.one_of(
        st.binary(max_size=600),
        st.text(max_size=300).map(str.encode),
        st.dictionaries(st.text(max_size=10), st.text(max_size=20)).map(
            lambda d: repr(d).replace("'", '"').encode()
        ),
        st.sampled_from(
            [b"Payload Too Large", b"<html><h1>504 Gateway Time-out</h1></html>", b"Bad Gateway",
             b'{"code":', b"<?xml version='1.0'?><Error><Code>X</Code>", b"\xff\xfe\x00"]
        ),
    ),
    retry_after=st.one_of(st.none(), st.text(max_size=8)),
)  # fmt: skip
def test_any_answer_becomes_a_classified_error(
    status: int, body: bytes, retry_after: str | None
) -> None:
    headers = {} if retry_after is None else {"x-retry-after": retry_after}
    for parse in (classify, classify_oss):
        err = parse(status, body, headers)
        assert isinstance(err, RemoteError)
        assert err.status == status
        line = err.describe()
        assert "\n" not in err.body_start
        assert line.startswith(f"HTTP {status}")


@given(st.lists(st.tuples(st.integers(0, 200), st.integers(1, 50)), max_size=30))
def test_merged_ranges_equal_the_union(ranges: list[tuple[int, int]]) -> None:
    merged: list[list[int]] = []
    have: set[int] = set()
    for start, length in ranges:
        merged = merge(merged, start, start + length)
        have |= set(range(start, start + length))
    assert [b for s, e in merged for b in range(s, e)] == sorted(have)  # sorted, disjoint
    assert all(merged[i][1] < merged[i + 1][0] for i in range(len(merged) - 1))  # no touching
    e = Entry("p", 300, merged, 0.0)
    assert e.present == len(have)
    for start, length in ranges:
        assert e.covers(start, start + length)


@given(n=st.integers(0, 1 << 20), unit=st.sampled_from(["", "B", "KiB", "MiB", "GiB", " MiB"]))
def test_sizes_parse_exactly(n: int, unit: str) -> None:
    factor = {"": 1, "B": 1, "KiB": KiB, "MiB": MiB, "GiB": GiB, " MiB": MiB}[unit]
    assert parse_size(f"{n}{unit}") == n * factor


@given(st.text(max_size=12).filter(lambda s: not s.strip()[:1].isdigit()))
def test_anything_else_is_not_a_size(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)
