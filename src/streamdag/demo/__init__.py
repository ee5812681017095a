"""The demo that ``make demo`` runs: the medical-records pipeline of trained models.

The pipeline, its models and its note generator live in ``medical_records`` (shown as
``examples/medical_records`` in a source checkout);
this package starts what the pipeline needs (broker, workers, gateway), sends notes
through it and reports. ``quickstart.yaml`` with ``handlers.py`` is the smallest
pipeline, the one the README shows first.
"""

from streamdag.demo.example import EXAMPLE_DIR, Document, MedicalRecords, Models
from streamdag.demo.load import Answer
from streamdag.demo.report import DemoReport
from streamdag.demo.run import DemoOptions, run_demo

__all__ = [
    "EXAMPLE_DIR",
    "Answer",
    "DemoOptions",
    "DemoReport",
    "Document",
    "MedicalRecords",
    "Models",
    "run_demo",
]
