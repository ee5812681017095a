"""Train the demo's three models into ./models and print their held-out accuracy.

.venv/bin/python examples/medical_records/train.py [--train-notes 1500] [--test-notes 500]
"""

import sys

from medrec.train import main

if __name__ == "__main__":
    sys.exit(main())
