"""Tool results as plain-text tables, for people trying rowgate from a shell."""

from __future__ import annotations

import json
from typing import Any

_MAX_CELL = 40


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text.replace("\n", " ")
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…"


def render_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no rows)"
    headers: list[str] = []
    for row in rows:
        headers += [k for k in row if k not in headers]
    cells = [[_cell(row.get(h)) for h in headers] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "-+-".join("-" * w for w in widths)
    out = [" | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)), line]
    out += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(out)


def render_result(data: dict[str, Any]) -> str:
    """Lists of records become tables; everything else `key: value` lines below them."""
    parts: list[str] = []
    for key, value in data.items():
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):
            flat = [{k: v for k, v in item.items() if not isinstance(v, list)} | {
                k: ", ".join(map(str, v)) for k, v in item.items() if isinstance(v, list)
            } for item in value]  # fmt: skip
            parts.append(render_table(flat))
        else:
            parts.append(f"{key}: {_cell(value) if value is not None else '-'}")
    return "\n".join(parts)
