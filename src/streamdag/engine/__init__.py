"""The step worker loop: micro-batching, delivery guarantees, retries and the errors topic."""

from streamdag.engine.batching import Failure, RetryPolicy, Success, run_batch
from streamdag.engine.plan import StepPlan, step_plan
from streamdag.engine.runner import PipelineRunner, handle_signals
from streamdag.engine.worker import StepWorker

__all__ = [
    "Failure",
    "PipelineRunner",
    "RetryPolicy",
    "StepPlan",
    "StepWorker",
    "Success",
    "handle_signals",
    "run_batch",
    "step_plan",
]
