"""A scikit-learn text classifier as an ONNX clause classifier over whole notes.

skl2onnx turns ``TfidfVectorizer -> LogisticRegression`` into an ONNX graph over a
column of strings. The pipeline hands a model one row per note with every clause in it,
so the graph is wrapped to take ``clauses`` [notes, slots] and give, per clause, ``label``
(the class, a string) and ``score`` (its probability), both [notes, slots]:

    clauses -Reshape[-1, 1]-> skl2onnx graph -> label, probabilities
    label -Reshape(shape of clauses)-> label
    probabilities -ReduceMax(axis 1)-Reshape(shape of clauses)-> score

Every clause model has this interface, so a spec joins them with one ``tensor_map``.
"""

from __future__ import annotations

from typing import Any

import onnx
from onnx import TensorProto, helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import StringTensorType
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

__all__ = ["OPSET", "clause_classifier"]

OPSET = 18  # the highest opset the graph may use; skl2onnx picks the lowest that suffices


def clause_classifier(pipe: Pipeline, name: str, metadata: dict[str, str]) -> onnx.ModelProto:
    """The ONNX model of a fitted ``TfidfVectorizer(lowercase=False) -> LogisticRegression``.

    ``lowercase=False`` matters: skl2onnx would otherwise add a StringNormalizer, which
    needs the en_US.UTF-8 locale that many machines lack (the clauses arrive lower-cased).
    """
    options: dict[Any, Any] = {LogisticRegression: {"zipmap": False}}
    flat = convert_sklearn(
        pipe,
        name,
        initial_types=[("flat_clauses", StringTensorType([None, 1]))],
        options=options,
        target_opset={"": OPSET, "ai.onnx.ml": 3},
    )
    graph = flat.graph
    rename = {"label": "flat_label", "probabilities": "flat_probabilities"}
    for node in graph.node:
        node.output[:] = [rename.get(o, o) for o in node.output]
        node.input[:] = [rename.get(i, i) for i in node.input]
    nodes = [
        helper.make_node("Shape", ["clauses"], ["slots_shape"]),
        helper.make_node(
            "Constant",
            [],
            ["column_shape"],
            value=helper.make_tensor("column_shape", TensorProto.INT64, [2], [-1, 1]),
        ),
        helper.make_node("Reshape", ["clauses", "column_shape"], ["flat_clauses"]),
        *graph.node,
        helper.make_node("Reshape", ["flat_label", "slots_shape"], ["label"]),
        _reduce_max(flat, "flat_probabilities", "flat_score"),
        helper.make_node("Reshape", ["flat_score", "slots_shape"], ["score"]),
    ]
    wrapped = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("clauses", TensorProto.STRING, ["notes", "slots"])],
        [
            helper.make_tensor_value_info("label", TensorProto.STRING, ["notes", "slots"]),
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["notes", "slots"]),
        ],
        initializer=list(graph.initializer),
    )
    model = helper.make_model(wrapped, opset_imports=list(flat.opset_import))
    model.ir_version = flat.ir_version
    model.producer_name = "streamdag examples/medical_records"
    model.doc_string = f"{name}: a clause classifier (tf-idf word 1-2 grams, logistic regression)"
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    return model


def _reduce_max(flat: onnx.ModelProto, source: str, target: str) -> onnx.NodeProto:
    """ReduceMax over the class axis in the form of the opset skl2onnx settled on (it picks
    the lowest that holds its graph): the axes are an attribute before opset 18."""
    opset = next(o.version for o in flat.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 18:
        return helper.make_node("ReduceMax", [source], [target], axes=[1], keepdims=0)
    axes = helper.make_tensor("class_axis", TensorProto.INT64, [1], [1])
    flat.graph.initializer.append(axes)
    return helper.make_node("ReduceMax", [source, "class_axis"], [target], keepdims=0)
