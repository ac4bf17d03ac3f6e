"""How experiments are woven among targets: every item once, both orders kept, spread out."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from probe.runner import _weave


@given(st.integers(0, 30), st.integers(0, 30))
def test_weave_keeps_everything_in_order(n_targets: int, n_experiments: int) -> None:
    a = [f"t{i}" for i in range(n_targets)]
    b = [f"e{i}" for i in range(n_experiments)]
    out = _weave(a, b)
    assert sorted(out) == sorted(a + b)
    assert [x for x in out if x.startswith("t")] == a
    assert [x for x in out if x.startswith("e")] == b


def test_weave_spreads_experiments_among_targets() -> None:
    out = _weave([f"t{i}" for i in range(9)], ["e0", "e1", "e2"])
    positions = [i for i, x in enumerate(out) if x.startswith("e")]
    gaps = [later - earlier for earlier, later in zip(positions, positions[1:], strict=False)]
    assert gaps and min(gaps) >= 3
