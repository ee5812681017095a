"""What the demo tests share."""

from __future__ import annotations

from dataclasses import dataclass

from streamdag.demo import MedicalRecords, Models


@dataclass(frozen=True)
class Trained:
    """A copy of the example under a fresh pipeline name, with models trained for it."""

    example: MedicalRecords
    models: Models
