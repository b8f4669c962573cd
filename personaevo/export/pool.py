"""Sampling a pool of personas from generator programs, in the sandbox.

Every program runs only in :class:`~personaevo.sandbox.Sandbox`, in chunks of ``chunk``
personas, each chunk with its own seed: chunk ``c`` of program ``i`` gets
``SeedSequence([seed, i, c]).generate_state(1)[0]``, so the pool is the same for the same
programs, sizes and seed, whatever the number of workers. Round one asks every program for
an equal share of ``size``; later rounds (up to ``rounds``) ask the programs that
delivered for what is still missing. Every persona is validated against the space
(invalid ones are counted by reason, never kept), and a trait vector already in the pool
is a duplicate (counted, dropped). What each program gave, and why not more, is kept per
program (:class:`ProgramYield`).

With ``measure`` (:class:`personaevo.export.measure.PoolMeasure`) each chunk is measured
by an assessor before anything else: the measured ``traits`` are validated, deduplicated
and pooled, the declared ones are kept as JSON text (``Pool.declared``), and personas
the assessor cannot measure are invalid with reason ``unmeasured: <kind>``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel

from personaevo.personas import reason_kind
from personaevo.programs import GeneratorProgram
from personaevo.sandbox import Job, RunResult, Sandbox, SandboxLimits
from personaevo.spaces import ContinuousAxis, TraitSpace


class ProgramYield(BaseModel):
    """What one program gave the pool, and why not more."""

    name: str
    program_hash: str
    runs: int = 0
    requested: int = 0
    returned: int = 0  # personas the program returned (before any check)
    invalid: int = 0
    invalid_reasons: dict[str, int] = {}
    duplicates: int = 0  # valid but with a trait vector already in the pool
    pooled: int = 0  # distinct valid personas it added to the pool
    exported: int = 0
    failures: dict[str, int] = {}  # failed runs by failure kind
    messages: list[str] = []  # the first few failure messages
    max_rss_mb: float | None = None  # largest resident memory of one of its runs
    seconds: float = 0.0  # sandbox wall time of its runs, summed
    cpu_seconds: float = 0.0  # CPU time of its runs in the sandbox, summed


@dataclass
class Pool:
    """Distinct valid personas from the programs, in a deterministic order."""

    space: TraitSpace
    native: np.ndarray  # (n, d), see personaevo.grid
    program: np.ndarray  # (n,) index into `yields`
    seed: np.ndarray  # (n,) the chunk seed that produced it
    chunk: np.ndarray  # (n,) personas requested in that run
    source_id: list[str]  # the id the program gave the persona
    description: list[str | None]
    profile: list[str | None]  # JSON text
    yields: list[ProgramYield]
    declared: list[str] | None = None  # JSON text of the declared traits, when measured
    requested: int = 0
    extra_keys: Counter = field(default_factory=Counter)  # persona keys not exported

    def __len__(self) -> int:
        return len(self.native)

    def take(self, keep: np.ndarray) -> Pool:
        """The pool of the rows where ``keep`` (a boolean mask) holds, in the same order."""
        rows = np.flatnonzero(keep).tolist()
        return Pool(
            space=self.space,
            native=self.native[keep],
            program=self.program[keep],
            seed=self.seed[keep],
            chunk=self.chunk[keep],
            source_id=[self.source_id[i] for i in rows],
            description=[self.description[i] for i in rows],
            profile=[self.profile[i] for i in rows],
            yields=self.yields,
            declared=None if self.declared is None else [self.declared[i] for i in rows],
            requested=self.requested,
            extra_keys=self.extra_keys,
        )


def chunk_seed(seed: int, program: int, chunk: int) -> int:
    """The seed of a program's ``chunk``-th run (a 32-bit non-negative integer)."""
    return int(np.random.SeedSequence([seed, program, chunk]).generate_state(1)[0])


def sample_pool(
    programs: list[GeneratorProgram],
    view: Any,
    space: TraitSpace,
    size: int,
    seed: int = 0,
    chunk: int = 2000,
    rounds: int = 3,
    sandbox: Sandbox | None = None,
    workers: int = 2,
    limits: SandboxLimits | None = None,
    llm: Any = None,
    progress: Callable[[str], None] | None = None,
    measure: Measure | None = None,
    cpu_ms_per_persona: float | None = None,
) -> Pool:
    """About ``size`` distinct valid personas from ``programs`` (fewer when they cannot
    give more; see the yields). ``view`` is what the programs see as ``space``
    (:func:`personaevo.evaluate.generator_space`); ``llm`` is passed to the programs;
    ``measure(personas, seed)`` places each chunk at measured positions (module docstring).
    With ``cpu_ms_per_persona``, each run's CPU budget follows
    :meth:`SandboxLimits.for_personas` for its chunk size (the wall limit and the other
    limits are ``limits``'); without it, ``limits`` applies as it is."""
    yields = [ProgramYield(name=p.name, program_hash=p.ast_hash) for p in programs]
    builder = _PoolBuilder(space, yields, measure)
    chunks_done = [0] * len(programs)
    own = sandbox is None
    box = Sandbox(workers=workers, limits=limits or SandboxLimits()) if own else sandbox
    try:
        live = list(range(len(programs)))
        for round_no in range(rounds):
            missing = size - builder.count
            if missing <= 0 or not live:
                break
            share = math.ceil(missing / len(live))
            jobs, owners = [], []
            for i in live:
                for n in _chunks(share, chunk):
                    s = chunk_seed(seed, i, chunks_done[i])
                    chunks_done[i] += 1
                    jobs.append(Job(program=programs[i], space=view, n=n, seed=s, llm=llm))
                    owners.append(i)
            if progress:
                progress(f"round {round_no + 1}: {len(jobs)} sandbox runs for {missing:,} personas")
            before = [y.pooled for y in yields]
            base = limits or box.limits
            pending = [
                box.submit(
                    j.program,
                    j.space,
                    j.n,
                    j.seed,
                    j.llm,
                    limits=_run_limits(base, j.n, cpu_ms_per_persona),
                )
                for j in jobs
            ]
            pending.reverse()
            for owner in owners:  # in submission order; each result is dropped once read
                builder.add(owner, pending.pop().result())
            builder.requested += sum(j.n for j in jobs)
            live = [i for i in live if yields[i].pooled > before[i]]
    finally:
        if own:
            box.close()
    return builder.build()


def _run_limits(base: SandboxLimits, n: int, cpu_ms_per_persona: float | None) -> SandboxLimits:
    """``base`` with the CPU budget of a run of ``n`` personas (``base`` itself without a
    per-persona budget)."""
    if cpu_ms_per_persona is None:
        return base
    rest = base.model_dump(exclude={"wall_seconds", "cpu_seconds"})
    return SandboxLimits.for_personas(n, base.wall_seconds, cpu_ms_per_persona, **rest)


def _chunks(total: int, chunk: int) -> list[int]:
    """Run sizes adding up to ``total``, each at most ``chunk``."""
    full, rest = divmod(total, chunk)
    return [chunk] * full + ([rest] if rest else [])


Measure = Callable[[list[dict[str, Any]], int], tuple[list[dict[str, Any]], Counter]]


class _PoolBuilder:
    """Accumulates sandbox results into a pool, dropping invalid and duplicate personas."""

    def __init__(
        self, space: TraitSpace, yields: list[ProgramYield], measure: Measure | None = None
    ) -> None:
        self.space = space
        self.yields = yields
        self.measure = measure
        self.declared: list[str] = []
        self.seen: set[bytes] = set()
        self.native: list[np.ndarray] = []
        self.program: list[int] = []
        self.seed: list[int] = []
        self.chunk: list[int] = []
        self.source_id: list[str] = []
        self.description: list[str | None] = []
        self.profile: list[str | None] = []
        self.extra_keys: Counter = Counter()
        self.requested = 0

    @property
    def count(self) -> int:
        return len(self.program)

    def add(self, owner: int, result: RunResult) -> None:
        y = self.yields[owner]
        y.runs += 1
        y.requested += result.n_requested
        y.seconds += result.wall_seconds
        y.cpu_seconds += result.cpu_seconds or 0.0
        if result.max_rss_mb is not None:
            y.max_rss_mb = max(y.max_rss_mb or 0.0, result.max_rss_mb)
        y.returned += result.n_returned or 0
        if result.n_invalid:  # refused by the sandbox's structural check
            _bump(y.invalid_reasons, "malformed", result.n_invalid)
            y.invalid += result.n_invalid
        if not result.ok and result.failure is not None:
            _bump(y.failures, str(result.failure), 1)
            if len(y.messages) < 3 and result.message:
                y.messages.append(f"seed {result.seed}: {result.message}"[:300])
        if not result.personas:
            return
        personas = result.personas
        if self.measure is not None:
            self.extra_keys.update(k for p in personas for k in p if k not in _KNOWN_KEYS)
            personas, dropped = self.measure(personas, result.seed)
            y.invalid += sum(dropped.values())
            for reason, count in dropped.items():
                _bump(y.invalid_reasons, reason, count)
            if not personas:
                return
        native, ok, reasons = validate(self.space, personas)
        y.invalid += int((~ok).sum())
        for reason, count in reasons.items():
            _bump(y.invalid_reasons, reason, count)
        for i in np.flatnonzero(ok).tolist():
            key = (native[i] + 0.0).tobytes()  # + 0.0 makes -0.0 equal to 0.0
            if key in self.seen:
                y.duplicates += 1
                continue
            self.seen.add(key)
            persona = personas[i]
            y.pooled += 1
            self.native.append(native[i])
            self.program.append(owner)
            self.seed.append(result.seed)
            self.chunk.append(result.n_requested)
            self.source_id.append(str(persona["id"]))
            self.description.append(persona.get("description"))
            profile = persona.get("profile")
            self.profile.append(None if profile is None else _json(profile))
            if self.measure is None:
                self.extra_keys.update(k for k in persona if k not in _KNOWN_KEYS)
            else:
                self.declared.append(_json(persona.get("declared_traits")))

    def build(self) -> Pool:
        d = self.space.dim
        return Pool(
            space=self.space,
            native=np.array(self.native).reshape(-1, d),
            program=np.array(self.program, dtype=np.int64),
            seed=np.array(self.seed, dtype=np.int64),
            chunk=np.array(self.chunk, dtype=np.int64),
            source_id=self.source_id,
            description=self.description,
            profile=self.profile,
            yields=self.yields,
            declared=None if self.measure is None else self.declared,
            requested=self.requested,
            extra_keys=self.extra_keys,
        )


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _bump(counts: dict[str, int], key: str, by: int) -> None:
    counts[key] = counts.get(key, 0) + by


_KNOWN_KEYS = frozenset({"id", "traits", "description", "profile", "provenance"})
_MISSING = object()


def validate(
    space: TraitSpace, personas: list[dict[str, Any]]
) -> tuple[np.ndarray, np.ndarray, Counter]:
    """Native rows, a validity mask and the invalid personas counted by reason kind, for
    personas the sandbox has checked for structure (dicts with an ``id`` and a ``traits``
    dict). The same verdict as :func:`personaevo.personas.check_personas`, column by
    column and without building a model per persona (the test suite compares the two);
    the reasons of invalid personas come from ``space.check_traits``."""
    n, d = len(personas), space.dim
    native = np.zeros((n, d))
    traits = [p["traits"] for p in personas]
    ok = np.array([len(t) == d for t in traits], dtype=bool)
    malformed = np.zeros(n, dtype=bool)
    for i, persona in enumerate(personas):
        description, profile = persona.get("description"), persona.get("profile")
        if not (description is None or isinstance(description, str)) or not (
            profile is None or isinstance(profile, dict | list | str)
        ):
            malformed[i] = True
    for j, axis in enumerate(space.axes):
        column = [t.get(axis.name, _MISSING) for t in traits]
        if isinstance(axis, ContinuousAxis):
            values = np.array(
                [v if type(v) in (float, int) else np.nan for v in column], dtype=np.float64
            )
            good = (values >= axis.low) & (values <= axis.high)  # NaN fails both
            native[:, j] = np.where(good, values, 0.0)
        else:
            lookup = {(type(v), v): k for k, v in enumerate(axis.values)}
            index = np.array([_level(lookup, v) for v in column], dtype=np.int64)
            good = index >= 0
            native[:, j] = np.maximum(index, 0)
        ok &= good
    ok &= ~malformed
    rows = np.flatnonzero(ok)
    ok[rows] = space.grid.feasible_mask(native[rows])
    reasons: Counter = Counter()
    for i in np.flatnonzero(~ok).tolist():
        if malformed[i]:
            reasons["malformed"] += 1
        else:
            found = space.check_traits(traits[i])
            reasons[reason_kind(found[0]) if found else "malformed"] += 1
    return native, ok, reasons


def _level(lookup: dict, value: Any) -> int:
    try:
        return lookup.get((type(value), value), -1)
    except TypeError:  # unhashable
        return -1
