"""Pipeline spec (pydantic), graph validation, the compiled plan and topic derivation."""

from streamdag.pipeline.graph import (
    OUTPUT_JOIN,
    Graph,
    JoinMode,
    Node,
    NodeKind,
    build_graph,
    check_spec,
)
from streamdag.pipeline.loader import load_spec, parse_spec
from streamdag.pipeline.plan import PipelinePlan, PlanNode, PlanStage, compile_plan
from streamdag.pipeline.spec import InputRef, OutputSpec, PipelineSpec, RetryConfig, StepSpec
from streamdag.pipeline.topics import (
    consumer_group,
    derive_topics,
    errors_topic,
    gateway_group,
    inputs_topic,
    join_state_topic,
    outputs_topic,
    source_topic,
    step_outputs_topic,
    topics_glob,
)

__all__ = [
    "OUTPUT_JOIN",
    "Graph",
    "InputRef",
    "JoinMode",
    "Node",
    "NodeKind",
    "OutputSpec",
    "PipelinePlan",
    "PipelineSpec",
    "PlanNode",
    "PlanStage",
    "RetryConfig",
    "StepSpec",
    "build_graph",
    "check_spec",
    "compile_plan",
    "consumer_group",
    "derive_topics",
    "errors_topic",
    "gateway_group",
    "inputs_topic",
    "join_state_topic",
    "load_spec",
    "outputs_topic",
    "parse_spec",
    "source_topic",
    "step_outputs_topic",
    "topics_glob",
]
