"""The tool-level permission matrix: which OAuth scopes allow which tools, on which tables.

It only narrows: Postgres still decides rows and columns. A principal whose `scopes` is
None (the local stdio user without a scoped token) is not narrowed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from schemas.config import ScopeGrant
from server.errors import RowgateError
from server.identity import Principal


class ScopeError(RowgateError):
    """The caller's token lacks a scope; `scopes` names those that would allow the call."""

    def __init__(self, message: str, scopes: Iterable[str]) -> None:
        super().__init__("insufficient_scope", message)
        self.scopes = tuple(sorted(scopes))


@dataclass(frozen=True, slots=True)
class _Grant:
    scope: str
    tables: frozenset[str] | None  # qualified or bare names; None = every table

    def covers(self, qualified: str) -> bool:
        return (
            self.tables is None
            or qualified in self.tables
            or qualified.rsplit(".", 1)[-1] in self.tables
        )


class Permissions:
    def __init__(self, matrix: dict[str, ScopeGrant]) -> None:
        self._by_tool: dict[str, tuple[_Grant, ...]] = {}
        for scope, grant in matrix.items():
            tables = None if grant.tables is None else frozenset(grant.tables)
            for tool in grant.tools:
                self._by_tool[tool] = (*self._by_tool.get(tool, ()), _Grant(scope, tables))

    def _held(self, who: Principal, tool: str) -> tuple[_Grant, ...]:
        grants = self._by_tool.get(tool, ())
        if who.scopes is None:
            return grants or (_Grant("", None),)
        return tuple(g for g in grants if g.scope in who.scopes)

    def may_call(self, who: Principal, tool: str) -> bool:
        return bool(self._held(who, tool))

    def tools(self, who: Principal, names: Iterable[str]) -> list[str]:
        return [name for name in names if self.may_call(who, name)]

    def check_tool(self, who: Principal, tool: str) -> bool:
        """Refuse a tool no held scope allows; True when some table may still be refused."""
        held = self._held(who, tool)
        if not held:
            needed = {g.scope for g in self._by_tool.get(tool, ())}
            if not needed:
                raise ScopeError(f"no scope allows {tool} on this server", ())
            raise ScopeError(
                f"{tool} needs the scope {' or '.join(sorted(needed))}; "
                "ask for a token that carries it",
                needed,
            )
        return all(g.tables is not None for g in held)

    def check_table(self, who: Principal, tool: str, qualified: str) -> None:
        if any(g.covers(qualified) for g in self._held(who, tool)):
            return
        needed = {g.scope for g in self._by_tool.get(tool, ()) if g.covers(qualified)}
        if not needed:
            raise ScopeError(f"no scope allows {tool} on {qualified}", ())
        raise ScopeError(
            f"{tool} on {qualified} needs the scope {' or '.join(sorted(needed))}", needed
        )

    def covers(self, who: Principal, tool: str, qualified: str) -> bool:
        return any(g.covers(qualified) for g in self._held(who, tool))
