"""``personaevo spaces list|show|validate``: the built-in trait spaces and space files."""

from __future__ import annotations

import argparse

from personaevo.cli._common import console
from personaevo.spaces import builtin_space_names, load_space, resolve_space
from personaevo.tables import space_table


def cmd_spaces(args: argparse.Namespace) -> int:
    if args.action == "list":
        for name in builtin_space_names():
            space = load_space(name)
            console.print(f"{name:24s} {space.dim:2d} axes  {space.context[:70]}…")
    elif args.action == "show":
        space = resolve_space(args.target)
        console.print(space_table(space))
        console.print(f"context: {space.context}")
        console.print(
            f"feasible cells: {space.grid.n_feasible_cells:,}  "
            f"feasible share of the space: {space.grid.feasible_fraction:.3f}"
        )
        for c in space.constraints:
            console.print(
                f"constraint {c.name or '(unnamed)'}: "
                f"{c.model_dump(exclude_none=True, exclude={'name'}, by_alias=True)}"
            )
        for c in space.consequential:
            console.print(f"consequential {c.name}: {c.description}")
    else:
        space = load_space(args.target)
        console.print(
            f"{args.target}: valid space {space.name!r} v{space.version}, {space.dim} axes, "
            f"{len(space.constraints)} constraints, {len(space.consequential)} consequential "
            f"configurations, {space.grid.n_feasible_cells:,} feasible cells"
        )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    spaces = sub.add_parser("spaces", help="list, show or validate trait spaces")
    spaces_sub = spaces.add_subparsers(dest="action", required=True)
    spaces_sub.add_parser("list", help="built-in spaces")
    spaces_sub.add_parser("show", help="one space's axes and rules").add_argument(
        "target", metavar="NAME_OR_FILE"
    )
    spaces_sub.add_parser("validate", help="check a space file").add_argument(
        "target", metavar="FILE"
    )
    spaces.set_defaults(func=cmd_spaces)
