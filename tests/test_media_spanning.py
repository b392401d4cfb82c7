"""Spanning planner: pure function over (study, series, instance, size) items."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mediasvc.errors import CapacityError
from mediasvc.media.spanning import PER_INSTANCE_OVERHEAD, Item, blocks, plan_volumes

MB = 1_000_000


def study(name: str, series: int, images: int, size: int) -> list[Item]:
    return [Item(name, f"{name}.{s}", f"{name}.{s}.{i}", size)
            for s in range(series) for i in range(images)]


def placed(plan):  # noqa: ANN001, ANN201 - test helper
    return [i.sop_instance_uid for v in plan.volumes for i in v.items]


def test_everything_on_one_volume_when_it_fits() -> None:
    items = study("A", 2, 5, 100_000) + study("B", 1, 3, 50_000)
    plan = plan_volumes(items, 700 * MB)
    assert len(plan.volumes) == 1
    assert placed(plan) == [i.sop_instance_uid for i in items]
    assert plan.splits == []


def test_studies_stay_whole_and_volumes_respect_capacity() -> None:
    # 6 studies of ~4 MB each on volumes of 10 MB: 2 per volume, none split.
    items = [i for n in range(6) for i in study(f"S{n}", 2, 10, 200_000)]
    plan = plan_volumes(items, 10 * MB)
    assert len(plan.volumes) == 3
    assert plan.splits == []
    for vol in plan.volumes:
        assert vol.used <= plan.usable
        assert sum(i.cost for i in vol.items) == vol.used
    where = plan.volume_of()
    assert all(len(v) == 1 for v in where.values())
    assert sorted(placed(plan)) == sorted(i.sop_instance_uid for i in items)


def test_cost_counts_whole_blocks_and_the_directory_record() -> None:
    assert blocks(1) == 2048 and blocks(2048) == 2048 and blocks(2049) == 4096
    assert Item("a", "b", "c", 10).cost == 2048 + PER_INSTANCE_OVERHEAD


def test_study_too_big_is_split_by_series_and_reported() -> None:
    big = study("BIG", 3, 10, 200_000)  # 3 series of ~2 MB, volume of 3 MB usable-ish
    small = study("SMALL", 1, 2, 100_000)
    plan = plan_volumes(big + small, 3_200_000)
    assert [s.study_uid for s in plan.splits] == ["BIG"]
    split = plan.splits[0]
    assert split.by == "series" and len(split.volumes) == 3
    assert "split by series" in split.describe()
    # Each series of the big study is whole on one volume; the small study is not split.
    for s in range(3):
        vols = {v.number for v in plan.volumes for i in v.items if i.series_uid == f"BIG.{s}"}
        assert len(vols) == 1
    assert len(plan.volume_of()["SMALL"]) == 1


def test_series_too_big_is_split_by_instance() -> None:
    items = study("HUGE", 1, 30, 200_000)  # one series of ~6 MB on 3 MB volumes
    plan = plan_volumes(items, 3_200_000)
    assert plan.splits[0].by == "instance"
    assert len(plan.volumes) >= 3
    assert sorted(placed(plan)) == sorted(i.sop_instance_uid for i in items)
    assert all(v.used <= plan.usable for v in plan.volumes)


def test_instance_larger_than_a_volume_is_refused() -> None:
    with pytest.raises(CapacityError, match="larger than one volume"):
        plan_volumes([Item("a", "b", "c", 5 * MB)], 2 * MB)


def test_capacity_below_reserve_is_refused() -> None:
    with pytest.raises(CapacityError, match="no room"):
        plan_volumes([Item("a", "b", "c", 10)], 1000)


def test_duplicate_instance_is_refused() -> None:
    with pytest.raises(CapacityError, match="twice"):
        plan_volumes([Item("a", "b", "c", 10), Item("a", "b", "c", 10)], 10 * MB)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 400_000)),
                min_size=1, max_size=8),
       st.integers(2_000_000, 8_000_000))
def test_every_instance_placed_once_within_capacity(shape: list[tuple[int, int, int]],
                                                    capacity: int) -> None:
    items = [i for n, (series, images, size) in enumerate(shape)
             for i in study(f"S{n}", series, images, size)]
    plan = plan_volumes(items, capacity)
    got = placed(plan)
    assert sorted(got) == sorted(i.sop_instance_uid for i in items)  # union = input
    assert len(got) == len(set(got))  # no duplicates
    assert all(v.used <= plan.usable for v in plan.volumes)
    split = {s.study_uid for s in plan.splits}
    for n in range(len(shape)):
        cost = sum(i.cost for i in items if i.study_uid == f"S{n}")
        if cost <= plan.usable:  # fits: never split
            assert f"S{n}" not in split
            assert len(plan.volume_of()[f"S{n}"]) == 1
