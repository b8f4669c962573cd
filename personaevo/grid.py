"""The compiled geometry of a trait space: unit-cube encoding, cell grid, feasibility.

Three representations of a persona's traits, each an ``(n, d)`` array with one column
per axis in declared order:

* **native** ``V``: continuous axes in axis units, ordinal/categorical axes as the
  index of the level or choice;
* **unit** ``U`` in ``[0, 1]^d``: continuous ``(x - low) / (high - low)``; a discrete
  axis with ``k`` values puts value ``i`` at ``i / (k - 1)`` (ordinal by rank,
  categorical by declared order), so the extremes of every axis sit on the cube's faces;
* **bins** ``B``: the cell grid; continuous axes are cut into ``bins`` equal-width
  intervals (``min(floor(u * bins), bins - 1)``), a discrete axis has one bin per value.

Feasibility of *regions* (cells, t-way bin combinations) is decided exactly by an
*atom* refinement: each continuous axis that a constraint mentions is split at every
constraint threshold and bin edge, so that every condition is constant on each atom;
axes linked by constraints form components whose atom products are enumerated once.
Boundary points (a persona exactly on a threshold) have measure zero and are decided
by their exact values instead.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import qmc

from personaevo.errors import InputError
from personaevo.spaces import Condition, ContinuousAxis, TraitSpace

MAX_COMPONENT_ATOMS = 5_000_000
_HASH_TABLE_SEED = 0x5EED


@dataclass(frozen=True)
class Component:
    """Axes linked by constraints, with their feasible atom combinations."""

    axes: tuple[int, ...]
    feasible_bins: np.ndarray  # (m, len(axes)) unique feasible bin tuples
    feasible_measure: float  # fraction of the component's product measure that is feasible


class SpaceGrid:
    """Encoding, cells and feasibility of one :class:`TraitSpace` (built once per space)."""

    def __init__(self, space: TraitSpace) -> None:
        self.space = space
        self.d = space.dim
        self.names = space.axis_names
        self.continuous = np.array([isinstance(a, ContinuousAxis) for a in space.axes])
        self.low = np.array([a.low if isinstance(a, ContinuousAxis) else 0.0 for a in space.axes])
        self.high = np.array(
            [a.high if isinstance(a, ContinuousAxis) else a.n_bins - 1.0 for a in space.axes]
        )
        self.n_bins = np.array([a.n_bins for a in space.axes], dtype=np.int64)
        self._constraint_fns = [self._compile_constraint(c) for c in space.constraints]
        self.components = self._build_components()
        self.feasible_fraction = math.prod(c.feasible_measure for c in self.components)
        self._tway_cache: dict[int, list[tuple[tuple[int, ...], np.ndarray]]] = {}
        radix_product = math.prod(int(b) for b in self.n_bins)
        self.exact_cell_keys = radix_product < 2**62
        if self.exact_cell_keys:
            self._radix = np.cumprod(np.r_[1, self.n_bins[:-1]]).astype(np.int64)
        else:
            table_rng = np.random.default_rng(_HASH_TABLE_SEED)
            self._hash = table_rng.integers(
                0, 2**63, size=(self.d, int(self.n_bins.max())), dtype=np.uint64
            )

    # ------------------------------------------------------------------ encodings

    def native(self, traits: list[dict[str, Any]]) -> np.ndarray:
        """Native matrix of *valid* trait mappings (see module docstring)."""
        V = np.empty((len(traits), self.d), dtype=np.float64)
        for j, axis in enumerate(self.space.axes):
            if isinstance(axis, ContinuousAxis):
                V[:, j] = [t[axis.name] for t in traits]
            else:
                V[:, j] = [axis.index(t[axis.name]) for t in traits]
        return V

    def unit(self, V: np.ndarray) -> np.ndarray:
        """Unit-cube encoding ``U`` of a native matrix."""
        span = np.where(self.high > self.low, self.high - self.low, 1.0)
        U = (V - self.low) / span
        single = ~self.continuous & (self.n_bins == 1)
        U[:, single] = 0.5
        return U

    def bins(self, V: np.ndarray) -> np.ndarray:
        """Cell-grid bin index per axis of a native matrix."""
        U = self.unit(V)
        B = np.where(self.continuous, np.floor(U * self.n_bins), V)
        return np.clip(B, 0, self.n_bins - 1).astype(np.int64)

    def from_uniform(self, X: np.ndarray) -> np.ndarray:
        """Map points of ``[0, 1)^d`` to native values so that uniform ``X`` gives the
        uniform measure of the space (continuous uniform, discrete values equally likely)."""
        X = np.clip(X, 0.0, np.nextafter(1.0, 0.0))
        V = self.low + X * (self.high - self.low)
        discrete = ~self.continuous
        V[:, discrete] = np.floor(X[:, discrete] * self.n_bins[discrete])
        return V

    def to_traits(self, V: np.ndarray) -> list[dict[str, Any]]:
        """Trait mappings for a native matrix (continuous values as Python floats)."""
        out = []
        axes = self.space.axes
        for row in V:
            traits = {}
            for j, axis in enumerate(axes):
                if isinstance(axis, ContinuousAxis):
                    traits[axis.name] = float(row[j])
                else:
                    traits[axis.name] = axis.values[int(row[j])]
            out.append(traits)
        return out

    def cell_keys(self, B: np.ndarray) -> np.ndarray:
        """One key per row of bins: the exact mixed-radix cell index when the grid has
        fewer than 2^62 cells, otherwise a 64-bit hash (collision odds ~ n^2 / 2^65)."""
        if self.exact_cell_keys:
            return B @ self._radix
        keys = np.zeros(len(B), dtype=np.uint64)
        for j in range(self.d):
            keys += self._hash[j, B[:, j]]
        return keys

    def cell_label(self, bins_row: np.ndarray) -> str:
        """Readable cell id, e.g. ``age=[16,30.8)|employment=student``."""
        parts = []
        for j, axis in enumerate(self.space.axes):
            b = int(bins_row[j])
            if isinstance(axis, ContinuousAxis):
                width = (axis.high - axis.low) / axis.bins
                lo, hi = axis.low + b * width, axis.low + (b + 1) * width
                close = "]" if b == axis.bins - 1 else ")"
                parts.append(f"{axis.name}=[{lo:.4g},{hi:.4g}{close}")
            else:
                parts.append(f"{axis.name}={axis.values[b]}")
        return "|".join(parts)

    # ---------------------------------------------------------------- feasibility

    def feasible_mask(self, V: np.ndarray) -> np.ndarray:
        """Rows of a native matrix that satisfy every constraint."""
        columns = {name: V[:, j] for j, name in enumerate(self.names)}
        mask = np.ones(len(V), dtype=bool)
        for fn in self._constraint_fns:
            mask &= fn(columns)
        return mask

    def region_mask(self, V: np.ndarray, conditions: dict[str, Condition]) -> np.ndarray:
        """Rows of a native matrix inside a conjunction of conditions."""
        columns = {name: V[:, j] for j, name in enumerate(self.names)}
        return self._compile_conjunction(conditions)(columns)

    def cells_feasible(self, B: np.ndarray) -> np.ndarray:
        """Rows of bins whose cell contains a feasible point."""
        mask = np.ones(len(B), dtype=bool)
        for comp in self.components:
            cols = list(comp.axes)
            mask &= _rows_in(B[:, cols], comp.feasible_bins, self.n_bins[cols])
        return mask

    @property
    def n_feasible_cells(self) -> int:
        """Number of cells containing a feasible point (exact; may exceed 2^63)."""
        constrained = {j for c in self.components for j in c.axes}
        free = math.prod(int(self.n_bins[j]) for j in range(self.d) if j not in constrained)
        return free * math.prod(len(c.feasible_bins) for c in self.components)

    def tway_feasible(self, t: int) -> list[tuple[tuple[int, ...], np.ndarray]]:
        """For every set of ``t`` axes: the axes and a boolean mask over their bin
        combinations (mixed-radix order, first axis fastest) marking the feasible ones."""
        if t in self._tway_cache:
            return self._tway_cache[t]
        result = []
        for axes in itertools.combinations(range(self.d), t):
            sizes = self.n_bins[list(axes)]
            combos = np.indices(tuple(sizes[::-1])).reshape(t, -1)[::-1].T
            mask = np.ones(len(combos), dtype=bool)
            for comp in self.components:
                shared = [k for k, a in enumerate(axes) if a in comp.axes]
                if not shared:
                    continue
                comp_cols = [comp.axes.index(axes[k]) for k in shared]
                mask &= _rows_in(combos[:, shared], comp.feasible_bins[:, comp_cols], sizes[shared])
            result.append((axes, mask))
        self._tway_cache[t] = result
        return result

    def tway_keys(self, B: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
        """Mixed-radix index of each row's bin combination on ``axes`` (first axis fastest)."""
        sizes = self.n_bins[list(axes)]
        radix = np.cumprod(np.r_[1, sizes[:-1]]).astype(np.int64)
        return B[:, list(axes)] @ radix

    # ------------------------------------------------------------------- sampling

    def sample_uniform(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` native points drawn uniformly from the feasible region (by rejection)."""
        return self._fill_feasible(n, lambda m: rng.random((m, self.d)))

    def sobol(self, n: int, seed: int) -> np.ndarray:
        """The first ``n`` feasible points of a scrambled Sobol sequence (native)."""
        engine = qmc.Sobol(d=self.d, scramble=True, seed=seed)
        return self._fill_feasible(n, lambda m: engine.random(m))

    def _fill_feasible(self, n: int, draw) -> np.ndarray:
        if self.feasible_fraction < 1e-7:
            raise InputError(
                f"space {self.space.name!r}: the feasible region is only "
                f"{self.feasible_fraction:.2e} of the space; constraints are too tight to sample"
            )
        chunks, have = [], 0
        while have < n:
            want = n - have
            m = 1 << max(4, math.ceil(math.log2(want / self.feasible_fraction * 1.1 + 1)))
            V = self.from_uniform(draw(m))
            V = V[self.feasible_mask(V)]
            chunks.append(V)
            have += len(V)
        return np.concatenate(chunks)[:n] if chunks else np.empty((0, self.d))

    # -------------------------------------------------------------- compilation

    def _compile_conjunction(self, conditions: dict[str, Condition]):
        tests = [(name, self._compile_condition(name, cond)) for name, cond in conditions.items()]

        def holds(columns: dict[str, np.ndarray]) -> np.ndarray:
            first = next(iter(columns.values()))
            mask = np.ones(len(first), dtype=bool)
            for name, test in tests:
                mask &= test(columns[name])
            return mask

        return holds

    def _compile_constraint(self, constraint):
        if constraint.forbid is not None:
            forbid = self._compile_conjunction(constraint.forbid)
            return lambda cols: ~forbid(cols)
        when = self._compile_conjunction(constraint.when)
        then = self._compile_conjunction(constraint.then)
        return lambda cols: ~when(cols) | then(cols)

    def _compile_condition(self, name: str, condition: Condition):
        axis = self.space.axis_by_name[name]
        checks = []
        for op, operand in condition.operators().items():
            if isinstance(axis, ContinuousAxis):
                checks.append((op, float(operand)))
            elif op in ("in", "not_in"):
                checks.append((op, np.array([axis.index(v) for v in operand], dtype=float)))
            else:
                checks.append((op, float(axis.index(operand))))

        def test(x: np.ndarray) -> np.ndarray:
            mask = np.ones(len(x), dtype=bool)
            for op, ref in checks:
                if op == "in":
                    mask &= np.isin(x, ref)
                elif op == "not_in":
                    mask &= ~np.isin(x, ref)
                else:
                    mask &= _NUMPY_OPS[op](x, ref)
            return mask

        return test

    def _thresholds(self, j: int) -> list[float]:
        name = self.names[j]
        values = []
        for constraint in self.space.constraints:
            for _, conds in constraint.clauses():
                if name in conds:
                    values += [float(v) for v in conds[name].operators().values()]
        return values

    def _atoms(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Representative native values of axis ``j``'s atoms and their measure shares."""
        axis = self.space.axes[j]
        if not isinstance(axis, ContinuousAxis):
            k = axis.n_bins
            return np.arange(k, dtype=float), np.full(k, 1.0 / k)
        edges = np.linspace(axis.low, axis.high, axis.bins + 1)
        cuts = [v for v in self._thresholds(j) if axis.low < v < axis.high]
        edges = np.unique(np.r_[edges, cuts])
        mids = (edges[:-1] + edges[1:]) / 2
        return mids, np.diff(edges) / (axis.high - axis.low)

    def _build_components(self) -> list[Component]:
        parent = list(range(self.d))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        index = {name: j for j, name in enumerate(self.names)}
        groups: dict[int, list[int]] = {}
        for constraint in self.space.constraints:
            axes = sorted(index[a] for a in constraint.axes)
            for a in axes[1:]:
                parent[find(a)] = find(axes[0])
        for constraint in self.space.constraints:
            root = find(index[next(iter(constraint.axes))])
            groups.setdefault(root, [])
        for j in range(self.d):
            if find(j) in groups:
                groups[find(j)].append(j)
        return [self._enumerate_component(tuple(sorted(axes))) for axes in groups.values()]

    def _enumerate_component(self, axes: tuple[int, ...]) -> Component:
        atoms = [self._atoms(j) for j in axes]
        total = math.prod(len(values) for values, _ in atoms)
        if total > MAX_COMPONENT_ATOMS:
            names = ", ".join(self.names[j] for j in axes)
            raise InputError(
                f"space {self.space.name!r}: constraints link axes ({names}) into {total:,} "
                f"atom combinations, more than {MAX_COMPONENT_ATOMS:,}; split the constraints"
            )
        grids = np.meshgrid(*[np.arange(len(v)) for v, _ in atoms], indexing="ij")
        idx = np.stack([g.ravel() for g in grids], axis=1)
        V = np.zeros((total, self.d))
        weight = np.ones(total)
        for k, j in enumerate(axes):
            values, shares = atoms[k]
            V[:, j] = values[idx[:, k]]
            weight *= shares[idx[:, k]]
        names = {self.names[j] for j in axes}
        columns = {name: V[:, j] for j, name in enumerate(self.names)}
        mask = np.ones(total, dtype=bool)
        for constraint, fn in zip(self.space.constraints, self._constraint_fns, strict=True):
            if constraint.axes <= names:
                mask &= fn(columns)
        feasible_bins = np.unique(self.bins(V[mask])[:, list(axes)], axis=0)
        return Component(axes, feasible_bins, float(weight[mask].sum()))


_NUMPY_OPS = {
    "lt": np.less,
    "le": np.less_equal,
    "gt": np.greater,
    "ge": np.greater_equal,
    "eq": np.equal,
    "ne": np.not_equal,
}


def _rows_in(rows: np.ndarray, allowed: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Which rows of small non-negative integer vectors appear among ``allowed`` rows."""
    if len(allowed) == 0:
        return np.zeros(len(rows), dtype=bool)
    radix = np.cumprod(np.r_[1, sizes[:-1]]).astype(np.int64)
    return np.isin(rows @ radix, allowed @ radix)
