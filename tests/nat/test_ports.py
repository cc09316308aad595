"""PortPool: even/odd slots, exhaustion, release and unpredictability."""

from __future__ import annotations

import ast
import itertools
import random
from pathlib import Path

import pytest

from hostednat.nat import latch, ports
from hostednat.nat.binding import NoPortsAvailable
from hostednat.nat.ports import PortPool


def test_pairs_start_on_even_ports_inside_the_range() -> None:
    """Every pair is an even RTP port whose odd RTCP port is still in range."""
    pool = PortPool(30000, 30099, rng=random.Random(1))

    allocated = [pool.allocate_pair() for _ in range(pool.size)]

    assert all(port % 2 == 0 for port in allocated)
    assert all(port >= 30000 and port + 1 <= 30099 for port in allocated)


def test_odd_bounds_shrink_the_range_to_whole_pairs() -> None:
    """An odd first port and an even last port leave only complete pairs."""
    pool = PortPool(30001, 30010, rng=random.Random(1))

    allocated = sorted(pool.allocate_pair() for _ in range(pool.size))

    assert allocated == [30002, 30004, 30006, 30008]


def test_exhausted_pool_raises_no_ports_available() -> None:
    """Allocating from a pool with no free slot raises NoPortsAvailable (453)."""
    pool = PortPool(30000, 30003)
    pool.allocate_pair()
    pool.allocate_single()

    with pytest.raises(NoPortsAvailable) as raised:
        pool.allocate_pair()

    assert raised.value.status == 453
    assert pool.free_pairs == 0


def test_released_slot_can_be_allocated_again() -> None:
    """A released port returns to the pool and is handed out again."""
    pool = PortPool(30000, 30001)
    port = pool.allocate_pair()

    pool.release(port)

    assert pool.free_pairs == 1
    assert pool.allocate_pair() == port


def test_no_port_is_handed_out_twice_before_release() -> None:
    """Draining the pool yields each slot exactly once."""
    pool = PortPool(30000, 31999, rng=random.Random(7))

    allocated = [pool.allocate_pair() for _ in range(pool.size)]

    assert len(set(allocated)) == pool.size == 1000


def test_single_port_takes_a_whole_slot() -> None:
    """A single-port allocation uses one even slot and never hands out its odd."""
    pool = PortPool(30000, 30005, rng=random.Random(3))

    single = pool.allocate_single()
    pairs = [pool.allocate_pair() for _ in range(pool.free_pairs)]

    assert single % 2 == 0
    assert pool.free_pairs == 0
    assert single not in pairs and single + 1 not in pairs


def test_allocation_order_is_not_sequential() -> None:
    """Consecutive allocations do not walk the range in order."""
    pool = PortPool(30000, 31999, rng=random.Random(11))

    allocated = [pool.allocate_pair() for _ in range(50)]
    steps = {b - a for a, b in itertools.pairwise(allocated)}

    assert allocated != sorted(allocated)
    assert len(steps) > 40


def test_seeds_give_different_orders() -> None:
    """Two generators draw different sequences from the same range."""
    first = PortPool(30000, 31999, rng=random.Random(1))
    second = PortPool(30000, 31999, rng=random.Random(2))

    assert [first.allocate_pair() for _ in range(10)] != [
        second.allocate_pair() for _ in range(10)
    ]


def test_default_generator_is_system_random() -> None:
    """Without an explicit generator the pool draws from the OS."""
    pool = PortPool(30000, 30099)

    assert isinstance(pool._rng, random.SystemRandom)


def test_releasing_a_port_not_allocated_raises() -> None:
    """Releasing a free or foreign port is a caller error."""
    pool = PortPool(30000, 30003)
    port = pool.allocate_pair()
    pool.release(port)

    with pytest.raises(ValueError):
        pool.release(port)
    with pytest.raises(ValueError):
        pool.release(40000)


def test_contains_tells_allocated_slots() -> None:
    """``in`` is true for an allocated slot and false once released."""
    pool = PortPool(30000, 30001)
    port = pool.allocate_single()

    assert port in pool
    pool.release(port)
    assert port not in pool


@pytest.mark.parametrize(
    ("first", "last"),
    [(0, 100), (30000, 70000), (30010, 30000), (30000, 30000), (30001, 30002)],
)
def test_bad_ranges_raise_value_error(first: int, last: int) -> None:
    """A range outside 1-65535, reversed, or without a whole pair is refused."""
    with pytest.raises(ValueError):
        PortPool(first, last)


@pytest.mark.parametrize("module", [ports, latch])
def test_sans_io_modules_do_not_import_twisted(module: object) -> None:
    """The pool and the latching rules stay free of Twisted."""
    source = Path(str(getattr(module, "__file__", ""))).read_text()

    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)

    assert not any(name.split(".")[0] == "twisted" for name in imported)
