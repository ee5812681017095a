"""Runtime ``keywords``: which of a list of keywords each text mentions.

It takes one BYTES tensor of UTF-8 texts, one per row, and gives two tensors named after
``output``: ``<output>`` (BOOL, one column per keyword, in the order declared) and
``<output>_count`` (INT64, how many of the keywords the row mentions). A keyword matches as
a whole word, ignoring case unless ``case_sensitive``.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from streamdag.errors import InvalidInput, ModelError
from streamdag.runtimes import (
    Model,
    ModelMetadata,
    RuntimeSpec,
    TensorSpec,
    check_inputs,
    check_outputs,
)

__all__ = ["KeywordModel", "KeywordSpec"]


class KeywordSpec(RuntimeSpec):
    """What a pipeline writes under ``models:`` for this runtime, besides ``runtime``."""

    keywords: list[str] = Field(min_length=1, description="The words to look for.")
    input: str = Field(default="text", description="The name of the input tensor.")
    output: str = Field(
        default="keywords", pattern=r"^\w+$", description="<output> and <output>_count."
    )
    case_sensitive: bool = False

    @property
    def output_names(self) -> list[str] | None:
        # Known without loading, so the spec loader can check references to them.
        return [self.output, f"{self.output}_count"]


class KeywordModel(Model):
    """Flags keywords in text; stateless and thread-safe once loaded.

    Built by the registry as ``KeywordModel(name, spec)`` (``Model.from_spec``'s default).
    """

    spec_class = KeywordSpec

    def __init__(self, name: str, spec: KeywordSpec) -> None:
        self.name = name
        self.spec = spec
        self._pattern: re.Pattern[str] | None = None
        self._metadata: ModelMetadata | None = None

    def load(self) -> None:
        words = "|".join(re.escape(word) for word in self.spec.keywords)
        flags = 0 if self.spec.case_sensitive else re.IGNORECASE
        self._pattern = re.compile(rf"\b(?:{words})\b", flags)
        self._metadata = ModelMetadata(
            name=self.name,
            platform="keywords",
            inputs=[TensorSpec(self.spec.input, "BYTES", [-1])],
            outputs=[
                TensorSpec(self.spec.output, "BOOL", [-1, len(self.spec.keywords)]),
                TensorSpec(f"{self.spec.output}_count", "INT64", [-1]),
            ],
        )

    def metadata(self) -> ModelMetadata:
        if self._metadata is None:
            raise ModelError(f"model {self.name} is not loaded; call load() first")
        return self._metadata

    def predict(self, inputs: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        meta = self.metadata()
        rows = check_inputs(meta, inputs)  # InvalidInput for a wrong name, datatype or shape
        assert self._pattern is not None
        wanted = [self._fold(word) for word in self.spec.keywords]
        matches = np.zeros((rows, len(wanted)), dtype=np.bool_)
        for row, item in enumerate(inputs[self.spec.input]):
            try:
                text = item.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(
                    f"model {self.name}: row {row} of {self.spec.input!r} is not UTF-8 text"
                ) from exc
            found = {self._fold(match) for match in self._pattern.findall(text)}
            matches[row] = [word in found for word in wanted]
        outputs = {
            self.spec.output: matches,
            f"{self.spec.output}_count": matches.sum(axis=1, dtype=np.int64),
        }
        check_outputs(meta, outputs, rows)
        return outputs

    def unload(self) -> None:
        self._pattern = None
        self._metadata = None

    def _fold(self, word: str) -> str:
        return word if self.spec.case_sensitive else word.lower()
