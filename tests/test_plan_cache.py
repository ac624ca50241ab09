"""Plans are reused across filters that differ only in literal values; a reused plan must be
exactly what compiling the filter afresh would give."""

from __future__ import annotations

import pytest

from schemas.tools import SelectRowsRequest
from server.app import Rowgate
from server.identity import Principal
from server.sql.filters import condition_shape
from server.sql.statements import plan_select
from server.tools import _select_plan

TEMPLATES = [
    ("id = {}", ["5", "123456"]),
    ("status = {} AND total > {}", ["'open' ", "'paid'", "100", "2.5"]),
    ("note IS NULL OR note LIKE {}", ["'%x%'", "'it''s'"]),
    ("id IN ({}, {}) AND total BETWEEN {} AND {}", ["1", "2", "3.5", "900"]),
    ("customer_id = {} OR (status <> {} AND NOT created_by IS NULL)", ["7", "'draft'"]),
    ("orders.id >= {}", ["1"]),
    ("date_trunc({}, created_at) IS NOT NULL", ["'month'", "'year'"]),
    ("id = {}", ["-5", "1e2"]),
    ("created_at > now() - interval {}", ["'7 days'", "'1 year'"]),
]


def fill(template: str, values: list[str], shift: int) -> str:
    count = template.count("{}")
    return template.format(*(values[(i + shift) % len(values)] for i in range(count)))


@pytest.mark.parametrize(("template", "values"), TEMPLATES)
async def test_reused_plan_equals_a_fresh_one(
    rg: Rowgate, bob: Principal, template: str, values: list[str]
) -> None:
    access = await rg.policy.table(bob, "orders", "select")
    columns = list(access.selectable)
    for shift in range(3):
        where = fill(template, values, shift)
        request = SelectRowsRequest(table="orders", where=where, limit=7)
        reused = _select_plan(access, columns, request, 7)
        fresh = plan_select(access, columns, where, None, 7, None)
        assert reused.statement.sql == fresh.statement.sql
        assert [p.value for p in reused.statement.params] == [
            p.value for p in fresh.statement.params
        ]


def test_only_literal_free_token_shapes_are_shared() -> None:
    a, b = condition_shape("id = 5"), condition_shape("id = 6")
    assert a is not None and b is not None and a.key == b.key and a.literals == (5,)
    assert condition_shape("ID = 5").key != a.key  # type: ignore[union-attr]
    assert condition_shape("id = -5") is None
    assert condition_shape("lower(name) = 'x'") is None
    assert condition_shape("id = E'5'") is None


async def test_results_follow_the_new_literals(rg: Rowgate, bob: Principal) -> None:
    ids = [
        r["id"]
        for r in (await rg.call("select_rows", {"table": "orders", "limit": 3}, bob)).model_dump()[
            "rows"
        ]
    ]
    for order_id in ids:
        rows = (
            await rg.call("select_rows", {"table": "orders", "where": f"id = {order_id}"}, bob)
        ).model_dump()["rows"]
        assert [r["id"] for r in rows] == [order_id]
