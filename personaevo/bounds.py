"""Bounds on the numbers a user gives: seeds, persona counts, probe counts, worker counts.

The command line checks every numeric option against its bound while it parses
(:mod:`personaevo.cli._types`), and the run configurations (:class:`EvolveConfig`,
``TrainConfig``) carry the same bounds, so a value refused on the command line is refused
in a configuration file too. Each bound says why it is where it is.
"""

from __future__ import annotations

MAX_SEED = 2**32 - 1
"""Largest seed any command takes. ``transformers.set_seed`` (the GRPO trainer's seed) calls
``numpy.random.seed``, which refuses seeds of 2**32 and more; one bound for every
``--seed`` keeps a seed that works for one command working for the others."""

MAX_PERSONAS_PER_RUN = 100_000
"""Most personas one program run may be asked for (``score --n``, ``evolve --n``,
``export --chunk``). A run's personas come back as one JSON document, capped at the
sandbox's 64 MB output limit (``SandboxLimits.output_mb``): 100,000 personas at about
300 bytes each (traits only) to 900 bytes (with a description) is 30 to 90 MB, so more
could not come back even from a well-behaved program. The seeds spend about 0.1 ms of CPU
per persona, so 100,000 of them fit the default 60 s limit of ``score --timeout``; a
larger ``--n`` such as 10**10 would only wait that limit out. The metrics are sized for
100,000 personas too (no n-by-n matrix, :mod:`personaevo.metrics.geometry`)."""

MAX_EXPORT_POOL = 1_000_000
"""Most personas ``export --pool`` may sample. The pool is sampled in chunks of
``--chunk`` personas, but it is deduplicated, annotated and selected from in memory: the
benchmarked 200,000-persona pool peaked at 630 MB and took 55 s on 2 cores (README,
*Export and report*), so a million is about 3 GB and several minutes."""

MAX_EXPORT_PERSONAS = MAX_EXPORT_POOL // 4
"""Most personas ``export --n`` may ask for: the default pool is four times ``--n``, so
this is the largest ``--n`` whose default pool stays within :data:`MAX_EXPORT_POOL`."""

MIN_PROBES = 100
"""Fewest Monte Carlo coverage probes: the coverage radius is set so that Sobol points
cover 99% of the probes, which needs at least 100 of them to mean anything (as
``EvolveConfig.probes`` requires)."""

MAX_PROBES = 1_000_000
"""Most Monte Carlo coverage probes. A million probes read coverage to within 0.05
percentage points (one standard error; 0.5 with the default 10,000); more only cost
memory (the probes are cached, 8 bytes per axis each) and k-d tree queries."""

MAX_WORKERS = 256
"""Most sandbox or Ray evaluation workers. Each worker is a process holding the preloaded
interpreter (about 200 MB resident), so 256 of them need some 50 GB; a larger number is a
typo, and would start that many processes before the first program runs."""

MAX_TWAY = 3
"""Strongest ``export --tway``: the score reports 2- and 3-way coverage, and a reference
of a few thousand respondents leaves nearly every 4-way combination empty, so "rare"
4-way combinations would be noise, while the tables grow as bins**t per set of axes."""

MAX_PORT = 65_535
"""Largest TCP port."""
