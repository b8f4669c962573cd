"""Personas the simulator tests share."""

# A frustrated, impatient retail customer of the built-in customer_support space.
RETAIL = {
    "domain": "retail",
    "patience": "low",
    "verbosity": "terse",
    "tech_literacy": "low",
    "emotional_state": "frustrated",
    "goal_clarity": "clear",
    "language_proficiency": "native",
    "accessibility_needs": "none",
    "trust_in_automation": "neutral",
    "age_band": "35-44",
}
