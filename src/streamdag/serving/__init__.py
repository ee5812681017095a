"""The front doors: OIP V2 over REST (FastAPI) and gRPC (grpc.aio) from one process.

``DataPlane`` is the transport-neutral core both doors delegate to; ``Server`` runs both
doors over one DataPlane in one asyncio loop; ``serve`` is what ``streamdag serve`` runs.
Pipelines are reached through a ``PipelineGateway`` (request-reply over Kafka).
"""

from streamdag.serving.batcher import AdaptiveBatcher
from streamdag.serving.dataplane import DataPlane, ModelDescription, ServerMetadata
from streamdag.serving.gateway import KafkaGateway
from streamdag.serving.gateway_api import PipelineGateway, PipelineReadiness
from streamdag.serving.grpc import GRPC_STATUS, InferenceServicer
from streamdag.serving.repository import RepositoryEntry
from streamdag.serving.rest import HTTP_STATUS, create_app
from streamdag.serving.server import Server, build_gateway, event_loop_factory, serve

__all__ = [
    "GRPC_STATUS",
    "HTTP_STATUS",
    "AdaptiveBatcher",
    "DataPlane",
    "InferenceServicer",
    "KafkaGateway",
    "ModelDescription",
    "PipelineGateway",
    "PipelineReadiness",
    "RepositoryEntry",
    "Server",
    "ServerMetadata",
    "build_gateway",
    "create_app",
    "event_loop_factory",
    "serve",
]
