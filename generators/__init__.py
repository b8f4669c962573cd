"""Seed generator programs (installed as ``personaevo.seed_generators``).

Each file is a standalone program following the generator contract
(``generate(space, n, rng, llm=None) -> list[dict]``); they are read as source and run in
the sandbox, never imported by personaevo itself.
"""
