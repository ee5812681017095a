"""The models a server holds: built from pipeline specs, loaded, unloaded, listed.

Each model has one version, ``"1"`` (Triton's first version): specs do not version
models, and a stable value lets clients that always send a version keep working.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from streamdag.errors import ConfigError, ModelError, ModelNotFound, StreamdagError, Unavailable
from streamdag.pipeline import PipelineSpec
from streamdag.runtimes import Model, ModelMetadata, ModelSpec, create_model
from streamdag.serving.batcher import AdaptiveBatcher

__all__ = ["MODEL_VERSION", "ModelRepository", "RepositoryEntry", "ServedModel"]

MODEL_VERSION = "1"

State = Literal["UNAVAILABLE", "LOADING", "READY", "UNLOADING"]

_log = logging.getLogger("streamdag.serving")


@dataclass(frozen=True)
class RepositoryEntry:
    """One line of the repository index (OIP/Triton ``RepositoryIndexResponse.ModelIndex``)."""

    name: str
    version: str
    state: str
    reason: str = ""


class ServedModel:
    """One declared model, its state, and the batcher that runs it while it is READY."""

    def __init__(
        self, name: str, spec: ModelSpec, model: Model, *, source: str, base_dir: Path
    ) -> None:
        self.name = name
        self.spec = spec
        self.model = model
        self.source = source
        self.base_dir = base_dir
        self.state: State = "UNAVAILABLE"
        self.reason = "not loaded yet"
        # Kept after an unload so that metadata still answers for an unloaded model.
        self.metadata: ModelMetadata | None = None
        self.batcher: AdaptiveBatcher | None = None
        self.lock = asyncio.Lock()

    def ready_batcher(self) -> AdaptiveBatcher:
        """The batcher of a READY model; ``Unavailable`` otherwise."""
        if self.state != "READY" or self.batcher is None:
            raise Unavailable(
                f"model {self.name} is not ready ({self.state.lower()}: {self.reason})"
            )
        return self.batcher


class ModelRepository:
    """The served models by name; loading and unloading run in threads."""

    def __init__(self, specs: Sequence[PipelineSpec]) -> None:
        self._models: dict[str, ServedModel] = {}
        for spec in specs:
            where = spec.source or f"pipeline {spec.name}"
            for name, model_spec in spec.models.items():
                known = self._models.get(name)
                if known is None:
                    model = create_model(name, model_spec, spec.base_dir)
                    self._models[name] = ServedModel(
                        name, model_spec, model, source=where, base_dir=spec.base_dir
                    )
                elif known.spec != model_spec or known.base_dir != spec.base_dir:
                    raise ConfigError(
                        f"model {name} is declared differently in {known.source} and {where}; "
                        "a server holds one model per name, so rename one of them"
                    )
                # The same declaration in several pipelines is one model, loaded once.

    def names(self) -> list[str]:
        return list(self._models)

    def get(self, name: str, version: str = "") -> ServedModel:
        """The model ``name``; ``version`` may be empty or ``MODEL_VERSION``."""
        served = self._models.get(name)
        if served is None or version not in ("", MODEL_VERSION):
            raise ModelNotFound(name, version or None)
        return served

    def index(self, *, ready_only: bool = False) -> list[RepositoryEntry]:
        return [
            RepositoryEntry(m.name, MODEL_VERSION, m.state, "" if m.state == "READY" else m.reason)
            for m in self._models.values()
            if m.state == "READY" or not ready_only
        ]

    async def load_all(self) -> None:
        """Load every model in declaration order; the first failure is raised."""
        for name in self._models:
            await self.load(name)

    async def unload_all(self) -> None:
        for name in self._models:
            await self.unload(name)

    async def load(self, name: str) -> None:
        """Make ``name`` READY; a model that is READY already stays as it is."""
        served = self.get(name)
        async with served.lock:
            if served.state == "READY":
                return
            served.state, served.reason = "LOADING", "loading"
            try:
                # load() reads files and imports code: keep the event loop free meanwhile.
                await asyncio.to_thread(served.model.load)
                metadata = served.model.metadata()
            except Exception as exc:
                error = exc if isinstance(exc, StreamdagError) else _wrap(name, "load()", exc)
                served.state, served.reason = "UNAVAILABLE", str(error)
                raise error from exc
            served.metadata = metadata
            served.batcher = AdaptiveBatcher(name, served.model.predict, served.spec.batch)
            served.state, served.reason = "READY", ""
        _log.info("model %s ready (%s)", name, metadata.platform)

    async def unload(self, name: str) -> None:
        """Stop taking requests for ``name``, finish those in flight, then unload it."""
        served = self.get(name)
        async with served.lock:
            if served.state != "READY" or served.batcher is None:
                return
            served.state, served.reason = "UNLOADING", "unloading"
            await served.batcher.drain()
            served.batcher = None
            try:
                await asyncio.to_thread(served.model.unload)
            except Exception as exc:
                # Model.unload's contract: report, but the model is gone either way.
                _log.warning("model %s: unload() raised %s: %s", name, type(exc).__name__, exc)
            served.state, served.reason = "UNAVAILABLE", "unloaded"


def _wrap(name: str, what: str, exc: BaseException) -> ModelError:
    return ModelError(f"model {name}: {what} raised {type(exc).__name__}: {exc}")
