"""Why each persona matters: its cell, rare cells and combinations, consequential
configurations, and the rows that must be kept so none of them is lost by selection.

Definitions follow :mod:`personaevo.reference` and :mod:`personaevo.metrics.cells`:

* a persona's **cell** fixes one bin per axis (its id is the readable label
  ``axis=bin|axis=bin|...``);
* a **rare cell** is one of the reference's rare cells (lowest-mass support cells holding
  at most ``rare_mass_fraction`` of the mass); in 8 to 10 axes that set is usually
  empty, and rarity lives in **rare t-way combinations** (bins on ``t`` axes, default
  ``t = 2``), defined the same way per set of ``t`` axes;
* a **consequential cell** is a piece of a named consequential configuration: its
  region cut by the bins of the axes it names (for ``age < 18, distress >= severe``: each
  age bin below 18 with each distress level from severe up). Whole cells would not do: in
  8 to 10 axes nearly every persona has a cell of its own, so keeping one per cell would
  keep every persona inside a configuration.

:func:`required_rows` picks rows so that every configuration, rare cell, rare combination
and consequential cell the pool reached keeps at least one persona, in that order of
priority, with few rows (a row covering many of them is preferred).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from personaevo.export.models import ConsequentialCount, RareCount, TierCount
from personaevo.reference import ReferencePopulation
from personaevo.spaces import ContinuousAxis, TraitSpace

TIERS = ("configuration", "rare cell", "rare combination", "consequential cell")


@dataclass
class Annotations:
    """Per-row facts of a set of personas (rows of a native matrix)."""

    bins: np.ndarray  # (n, d)
    cell_keys: np.ndarray  # (n,)
    rare_cell: np.ndarray  # (n,) bool; all False without a reference
    combos: list[tuple[tuple[int, ...], np.ndarray, np.ndarray]]  # (axes, keys, rare hit)
    consequential: np.ndarray  # (n, configurations) bool
    consequential_cells: list[np.ndarray]  # per configuration: (n,) key on its own axes

    def rows(self, idx: np.ndarray) -> Annotations:
        """The annotations of some rows."""
        return Annotations(
            self.bins[idx],
            self.cell_keys[idx],
            self.rare_cell[idx],
            [(axes, keys[idx], hit[idx]) for axes, keys, hit in self.combos],
            self.consequential[idx],
            [keys[idx] for keys in self.consequential_cells],
        )

    @property
    def rare_any(self) -> np.ndarray:
        """Rows in a rare cell or with a rare combination."""
        out = self.rare_cell.copy()
        for _, _, hit in self.combos:
            out |= hit
        return out


def annotate(
    space: TraitSpace, native: np.ndarray, reference: ReferencePopulation | None, t: int = 2
) -> Annotations:
    """Cells, rare cells, rare ``t``-way combinations (``t = 0``: none) and consequential
    configurations of the rows of ``native``."""
    grid = space.grid
    bins = grid.bins(native)
    keys = grid.cell_keys(bins)
    n = len(native)
    rare_cell = np.zeros(n, dtype=bool)
    combos = []
    if reference is not None:
        rare_cell = np.isin(keys, reference.rare_cell_keys)
        if 0 < t <= space.dim:
            for axes, _, rare in reference.tway(t):
                combo_keys = grid.tway_keys(bins, axes)
                combos.append((axes, combo_keys, rare[combo_keys]))
    consequential = np.zeros((n, len(space.consequential)), dtype=bool)
    consequential_cells = []
    for c, config in enumerate(space.consequential):
        consequential[:, c] = grid.region_mask(native, config.where)
        own_axes = tuple(space.axis_names.index(name) for name in config.where)
        consequential_cells.append(grid.tway_keys(bins, own_axes))
    return Annotations(bins, keys, rare_cell, combos, consequential, consequential_cells)


def required_rows(notes: Annotations, limit: int) -> tuple[np.ndarray, dict[str, TierCount]]:
    """Rows that keep every reached configuration, rare cell, rare combination and
    consequential cell represented (in that priority), at most ``limit`` of them, and per
    kind how many were reached and kept.

    Each entry is first given the row covering the most entries (ties: lowest row); the
    candidates are then taken in priority order and kept only when they cover an entry
    no kept row covers yet (a greedy set cover)."""
    rows_parts, gid_parts, tier_of_gid = [], [], []
    offset = 0

    def add(rows: np.ndarray, labels: np.ndarray, tier: int) -> None:
        nonlocal offset
        if len(rows) == 0:
            return
        unique, inverse = np.unique(labels, return_inverse=True)
        rows_parts.append(rows)
        gid_parts.append(offset + inverse.ravel())
        tier_of_gid.append(np.full(len(unique), tier))
        offset += len(unique)

    for c in range(notes.consequential.shape[1]):
        rows = np.flatnonzero(notes.consequential[:, c])
        add(rows, np.zeros(len(rows), dtype=np.int64), 0)
    rows = np.flatnonzero(notes.rare_cell)
    add(rows, notes.cell_keys[rows], 1)
    for _, keys, hit in notes.combos:
        rows = np.flatnonzero(hit)
        add(rows, keys[rows], 2)
    for c, keys in enumerate(notes.consequential_cells):
        rows = np.flatnonzero(notes.consequential[:, c])
        add(rows, keys[rows], 3)
    counts = {name: TierCount(reached=0, kept=0) for name in TIERS}
    if offset == 0:
        return np.empty(0, np.int64), counts
    row = np.concatenate(rows_parts)
    gid = np.concatenate(gid_parts)
    tier = np.concatenate(tier_of_gid)
    value = np.bincount(row, minlength=len(notes.cell_keys))  # entries each row covers
    # each entry's best row: most entries covered, then lowest index
    order = np.lexsort((row, -value[row], gid))
    first = np.r_[True, gid[order][1:] != gid[order][:-1]]
    best_row, best_gid = row[order][first], gid[order][first]
    # candidates in priority order: the tier of the entry they were picked for
    cand_order = np.lexsort((best_row, -value[best_row], tier[best_gid]))
    candidates = best_row[cand_order]
    # row -> its entries (CSR)
    by_row = np.argsort(row, kind="stable")
    sorted_rows = row[by_row]
    covered = np.zeros(offset, dtype=bool)
    kept: list[int] = []
    seen: set[int] = set()
    for r in candidates.tolist():
        if r in seen:
            continue
        seen.add(r)
        lo, hi = np.searchsorted(sorted_rows, [r, r + 1])
        entries = gid[by_row[lo:hi]]
        if covered[entries].all():
            continue
        if len(kept) >= limit:
            break
        kept.append(r)
        covered[entries] = True
    for t, name in enumerate(TIERS):
        mask = tier == t
        counts[name] = TierCount(reached=int(mask.sum()), kept=int((covered & mask).sum()))
    return np.asarray(kept, dtype=np.int64), counts


def bin_label(axis, b: int) -> str:
    """Readable bin of one axis, e.g. ``age=[16,30.8)`` or ``employment=student``."""
    if isinstance(axis, ContinuousAxis):
        width = (axis.high - axis.low) / axis.bins
        lo, hi = axis.low + b * width, axis.low + (b + 1) * width
        close = "]" if b == axis.bins - 1 else ")"
        return f"{axis.name}=[{lo:.4g},{hi:.4g}{close}"
    return f"{axis.name}={axis.values[b]}"


def combo_bins(sizes: np.ndarray, key: int) -> list[int]:
    """Bins of a mixed-radix t-way key (first axis fastest), see ``SpaceGrid.tway_keys``."""
    out = []
    for size in sizes:
        out.append(int(key % size))
        key //= int(size)
    return out


def unreached_rare(
    space: TraitSpace, reference: ReferencePopulation, notes: Annotations, t: int = 2
) -> tuple[list[str], str]:
    """Labels of the rare cells no row reaches, or, when the reference has no rare cells,
    of the rare ``t``-way combinations no row reaches; and which of the two it is."""
    grid = space.grid
    if len(reference.rare_cell_keys):
        missing_keys = np.setdiff1d(reference.rare_cell_keys, notes.cell_keys)
        respondent_keys = grid.cell_keys(reference.bins)
        _, first_row = np.unique(respondent_keys, return_index=True)  # sorted like cell_keys
        where = np.searchsorted(reference.cell_keys, missing_keys)
        labels = [grid.cell_label(reference.bins[first_row[i]]) for i in where.tolist()]
        return labels, "rare cells"
    labels = []
    if 0 < t <= space.dim:
        for axes, _, rare in reference.tway(t):
            reached = np.zeros(len(rare), dtype=bool)
            keys = grid.tway_keys(notes.bins, axes)
            reached[keys] = True
            sizes = grid.n_bins[list(axes)]
            for key in np.flatnonzero(rare & ~reached).tolist():
                b = combo_bins(sizes, key)
                labels.append(
                    " & ".join(bin_label(space.axes[j], v) for j, v in zip(axes, b, strict=True))
                )
    return labels, f"rare {t}-way combinations"


def rare_counts(
    reference: ReferencePopulation | None,
    pool: Annotations,
    exported: Annotations,
    baseline: Annotations | None,
    t: int,
) -> list[RareCount]:
    """Rare cells and rare t-way combinations reached by each set."""
    if reference is None:
        return []

    def cells(notes: Annotations | None) -> int | None:
        return None if notes is None else len(np.unique(notes.cell_keys[notes.rare_cell]))

    def combos(notes: Annotations | None) -> int | None:
        if notes is None:
            return None
        return sum(len(np.unique(keys[hit])) for _, keys, hit in notes.combos)

    out = [
        RareCount(
            kind="rare cells",
            total=len(reference.rare_cell_keys),
            pool=cells(pool),
            exported=cells(exported),
            density_matched=cells(baseline),
        )
    ]
    if pool.combos:
        out.append(
            RareCount(
                kind=f"rare {t}-way combinations",
                total=sum(int(rare.sum()) for _, _, rare in reference.tway(t)),
                pool=combos(pool),
                exported=combos(exported),
                density_matched=combos(baseline),
            )
        )
    return out


def consequential_counts(
    space: TraitSpace, pool: Annotations, exported: Annotations, baseline: Annotations | None
) -> list[ConsequentialCount]:
    """Personas inside each consequential configuration, per set."""
    return [
        ConsequentialCount(
            name=config.name,
            description=config.description,
            pool=int(pool.consequential[:, c].sum()),
            exported=int(exported.consequential[:, c].sum()),
            density_matched=None if baseline is None else int(baseline.consequential[:, c].sum()),
        )
        for c, config in enumerate(space.consequential)
    ]
