"""The shared memory budget: sizes parse to the right byte counts, the budget
follows its overrides, and work that cannot fit is refused with its size."""

import pytest

from landscape.errors import LandscapeError
from landscape.memory import available_memory, format_bytes, memory_budget, parse_size, require


@pytest.mark.parametrize("text, expected", [("123", 123), ("512MB", 512 * 10**6), ("6GB", 6 * 10**9),
                                            ("1.5GiB", 3 * 2**29), ("2k", 2048), (" 7 mib ", 7 * 2**20)])
def test_sizes_parse_to_bytes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["lots", "-3GB", "0", "6 parsecs", ""])
def test_bad_sizes_are_refused_by_name(bad):
    with pytest.raises(LandscapeError, match="max_memory"):
        parse_size(bad)


def test_budget_follows_argument_then_environment_then_available(monkeypatch):
    monkeypatch.delenv("LANDSCAPE_MAX_MEMORY", raising=False)
    assert memory_budget(max_memory="1GB") == 10**9
    monkeypatch.setenv("LANDSCAPE_MAX_MEMORY", "3MB")
    assert memory_budget() == 3 * 10**6
    assert memory_budget(max_memory="1GB") == 10**9
    monkeypatch.delenv("LANDSCAPE_MAX_MEMORY")
    free = available_memory()
    assert abs(memory_budget() - free / 2) <= 0.05 * free  # memory moves a little between calls


def test_too_big_is_refused_with_the_size_it_needs():
    with pytest.raises(LandscapeError, match=r"needs 28.6 GB .* budget of 6 GB"):
        require(28.6e9, 6e9, "the density's Krylov basis")
    require(5e9, 6e9, "fits")
    assert format_bytes(1234) == "1.23 kB"
