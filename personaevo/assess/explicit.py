"""The explicit assessor: a persona is where its declared ``traits`` say it is."""

from __future__ import annotations

from personaevo.assess.base import (
    Assessor,
    MeasuredPositions,
    PersonaMeasurement,
    Record,
    record_id,
    summarise,
)
from personaevo.spaces import TraitSpace


class ExplicitAssessor(Assessor):
    """Passes every record through unchanged (the scorer validates the declared traits)."""

    method = "explicit"

    def _measure(self, personas: list[Record], space: TraitSpace, seed: int) -> MeasuredPositions:
        measurements = [PersonaMeasurement(id=record_id(r)) for r in personas]
        return MeasuredPositions(
            records=personas,
            measurements=measurements,
            summary=summarise(self.method, measurements),
        )
