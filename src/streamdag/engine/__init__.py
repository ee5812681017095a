"""The step worker loop: micro-batching, delivery guarantees, retries, the errors topic and
fused stages."""

from streamdag.engine.batching import Failure, RetryPolicy, Success, run_batch
from streamdag.engine.plan import StepPlan, step_plan
from streamdag.engine.runner import PipelineRunner, handle_signals
from streamdag.engine.stage import StagePlan, stage_plan
from streamdag.engine.worker import StepWorker

__all__ = [
    "Failure",
    "PipelineRunner",
    "RetryPolicy",
    "StagePlan",
    "StepPlan",
    "StepWorker",
    "Success",
    "handle_signals",
    "run_batch",
    "stage_plan",
    "step_plan",
]
