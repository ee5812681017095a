"""Pipeline spec (pydantic), graph validation and topic derivation."""

from streamdag.pipeline.graph import Graph, StepNode, build_graph, check_spec
from streamdag.pipeline.loader import load_spec, parse_spec
from streamdag.pipeline.spec import InputRef, OutputSpec, PipelineSpec, RetryConfig, StepSpec
from streamdag.pipeline.topics import (
    consumer_group,
    derive_topics,
    errors_topic,
    inputs_topic,
    join_state_topic,
    outputs_topic,
    source_topic,
    step_outputs_topic,
)

__all__ = [
    "Graph",
    "InputRef",
    "OutputSpec",
    "PipelineSpec",
    "RetryConfig",
    "StepNode",
    "StepSpec",
    "build_graph",
    "check_spec",
    "consumer_group",
    "derive_topics",
    "errors_topic",
    "inputs_topic",
    "join_state_topic",
    "load_spec",
    "outputs_topic",
    "parse_spec",
    "source_topic",
    "step_outputs_topic",
]
