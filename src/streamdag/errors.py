"""The one error tree of streamdag.

Every error carries a transport-neutral ``code``. Each front door maps codes to its own
status once (HTTP status, gRPC status, the ``streamdag-error`` header on error replies and
error-topic records); nothing else inspects error classes to pick a status.

    StreamdagError                      internal
    ├── ConfigError                     invalid_config
    │   ├── SpecError                   invalid_config   (file, field path, what is wrong)
    │   └── ExtraMissing                invalid_config   (an optional dependency not installed)
    ├── BrokerError                     broker
    │   ├── JavaNotFound
    │   ├── KafkaJarsMissing
    │   ├── KafkaJarsUnreachable       (the Maven repository cannot be read)
    │   ├── KafkaJarCorrupt            (a fetched jar does not match its checksum)
    │   ├── BrokerAlreadyRunning
    │   ├── PortInUse
    │   ├── BrokerNotRunning
    │   ├── BrokerLayoutMismatch       (a start that does not fit the recorded cluster)
    │   └── BrokerStartFailed
    ├── KafkaOperationError             kafka            (wraps confluent-kafka errors)
    │   └── TopicMismatch               kafka
    ├── InvalidInput                    invalid_argument
    │   └── DecodeError                 invalid_argument (undecodable record or body)
    ├── NotFound                        not_found
    │   ├── ModelNotFound
    │   └── PipelineNotFound
    ├── ResourceExhausted               resource_exhausted (a record too large for Kafka)
    │   └── PayloadTooLarge                 (a request over the server's limit)
    │       └── RecordTooLarge              (a request too large for one Kafka record)
    ├── Unauthenticated                 unauthenticated  (no valid bearer token)
    ├── PermissionDenied                permission_denied
    │   └── RepositoryChangesRefused    (a server started without --allow-repository-changes)
    ├── ModelError                      model_error      (the model raised)
    ├── DeadlineExceeded                deadline_exceeded
    │   └── ModelHung                       (calls still running long past their timeout)
    ├── Unavailable                     unavailable
    └── PayloadLost                     data_loss        (a payload-store object missing or
                                                          not what its record says)

Third-party errors are translated where they enter (``raise KafkaOperationError(...) from exc``).
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BrokerAlreadyRunning",
    "BrokerError",
    "BrokerLayoutMismatch",
    "BrokerNotRunning",
    "BrokerStartFailed",
    "ConfigError",
    "DeadlineExceeded",
    "DecodeError",
    "ExtraMissing",
    "InvalidInput",
    "JavaNotFound",
    "KafkaJarCorrupt",
    "KafkaJarsMissing",
    "KafkaJarsUnreachable",
    "KafkaOperationError",
    "ModelError",
    "ModelHung",
    "ModelNotFound",
    "NotFound",
    "PayloadLost",
    "PayloadTooLarge",
    "PermissionDenied",
    "PipelineNotFound",
    "PortInUse",
    "RecordTooLarge",
    "RepositoryChangesRefused",
    "ResourceExhausted",
    "SpecError",
    "StreamdagError",
    "TopicMismatch",
    "Unauthenticated",
    "Unavailable",
    "error_for_code",
]


class StreamdagError(Exception):
    """Base of every error streamdag raises on purpose."""

    code: ClassVar[str] = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(StreamdagError):
    """A setting or command-line value cannot be used."""

    code = "invalid_config"


class SpecError(ConfigError):
    """A pipeline spec is invalid: names the file, the field path and what is wrong.

    ``problems`` holds every ``(field, problem)`` found, when the message joins several."""

    def __init__(
        self,
        file: str | None,
        field: str,
        problem: str,
        *,
        problems: list[tuple[str, str]] | None = None,
    ) -> None:
        self.file = file
        self.field = field
        self.problem = problem
        self.problems = problems or [(field, problem)]
        where = f"{file}: " if file else ""
        at = f"{field}: " if field else ""
        super().__init__(f"{where}{at}{problem}")


class ExtraMissing(ConfigError):
    """What was asked needs an optional dependency (an extra) that is not installed."""

    def __init__(self, what: str, extra: str, module: str) -> None:
        self.what = what
        self.extra = extra
        self.module = module
        super().__init__(
            f"{what} needs the {extra!r} extra ({module} is not installed): "
            f"pip install 'streamdag[{extra}]'"
        )


class BrokerError(StreamdagError):
    """The local Kafka broker cannot be started, stopped or reached."""

    code = "broker"


class JavaNotFound(BrokerError):
    def __init__(self) -> None:
        super().__init__(
            "java not found: install Java 17+ or set JAVA_HOME (the local broker runs Kafka)"
        )


class KafkaJarsMissing(BrokerError):
    def __init__(self, libs_dir: str) -> None:
        self.libs_dir = libs_dir
        super().__init__(
            f"no Kafka jars in {libs_dir}: fetch them with `streamdag broker install` "
            "(or set STREAMDAG_KAFKA_LIBS to a folder holding kafka_2.13-*.jar)"
        )


class KafkaJarsUnreachable(BrokerError):
    """Kafka's jars cannot be fetched: the machine is offline, or the repository lacks them."""

    def __init__(self, repository: str, libs_dir: str, reason: str) -> None:
        self.repository = repository
        self.libs_dir = libs_dir
        self.reason = reason
        super().__init__(
            f"cannot fetch Kafka's jars from {repository} ({reason}): download the files "
            f"`streamdag broker install --urls` lists and put them in {libs_dir}, or set "
            "STREAMDAG_KAFKA_REPOSITORY to a Maven repository this machine reaches"
        )


class KafkaJarCorrupt(BrokerError):
    """A fetched jar does not match the checksum its repository publishes; it is not kept."""

    def __init__(self, url: str, algorithm: str, expected: str, actual: str) -> None:
        self.url = url
        self.algorithm = algorithm
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{url} does not match its published {algorithm} ({actual} instead of "
            f"{expected}); it was not kept: fetch again, or check the repository"
        )


class BrokerAlreadyRunning(BrokerError):
    def __init__(self, data_dir: str, pid: int, bootstrap: str) -> None:
        self.data_dir = data_dir
        self.pid = pid
        self.bootstrap = bootstrap
        super().__init__(
            f"a broker already runs on data dir {data_dir} (pid {pid}, {bootstrap}); "
            "stop it with `streamdag broker stop` or pick another --data-dir"
        )


class PortInUse(BrokerError):
    def __init__(self, port: int) -> None:
        self.port = port
        super().__init__(f"port {port} on 127.0.0.1 is already in use; pick another --port")


class BrokerNotRunning(BrokerError):
    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        super().__init__(f"no broker runs on data dir {data_dir}")


class BrokerLayoutMismatch(BrokerError):
    """A start asks for nodes, ports or security other than the data dir recorded."""

    def __init__(self, data_dir: str, problem: str) -> None:
        self.data_dir = data_dir
        self.problem = problem
        super().__init__(f"data dir {data_dir}: {problem}")


class BrokerStartFailed(BrokerError):
    """The broker process exited or did not become ready; the message ends with its log."""


class KafkaOperationError(StreamdagError):
    """A Kafka operation failed (wraps confluent-kafka's errors at the boundary)."""

    code = "kafka"


class TopicMismatch(KafkaOperationError):
    def __init__(self, topic: str, expected: int, actual: int) -> None:
        self.topic = topic
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"topic {topic} exists with {actual} partitions but the pipeline needs {expected}; "
            "change `partitions` in the spec or recreate the topic"
        )


class InvalidInput(StreamdagError):
    """A request or record does not fit the protocol or the model's inputs."""

    code = "invalid_argument"


class DecodeError(InvalidInput):
    """Bytes that cannot be decoded as an OIP message."""


class NotFound(StreamdagError):
    code = "not_found"


class ModelNotFound(NotFound):
    def __init__(self, name: str, version: str | None = None) -> None:
        self.name = name
        self.version = version
        ver = f" version {version}" if version else ""
        super().__init__(f"model {name}{ver} not found")


class PipelineNotFound(NotFound):
    def __init__(self, name: str, version: str | None = None) -> None:
        self.name = name
        self.version = version
        ver = f" version {version}" if version else ""
        super().__init__(f"pipeline {name}{ver} not found")


class ResourceExhausted(StreamdagError):
    """Something too large to carry: a request body, or a record for Kafka."""

    code = "resource_exhausted"


class PayloadTooLarge(ResourceExhausted):
    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(self._describe())

    def _describe(self) -> str:
        return f"request body of {self.size} bytes exceeds the limit of {self.limit} bytes"


class RecordTooLarge(PayloadTooLarge):
    """A pipeline request that one record of the pipeline's inputs topic cannot hold."""

    def __init__(self, pipeline: str, size: int, limit: int) -> None:
        self.pipeline = pipeline
        super().__init__(size, limit)

    def _describe(self) -> str:
        return (
            f"pipeline {self.pipeline}: the request makes a Kafka record of {self.size} bytes, "
            f"over the limit of {self.limit} bytes (message.max.bytes); a payload store "
            "carries larger requests (--payload-store or STREAMDAG_PAYLOAD_STORE)"
        )


class Unauthenticated(StreamdagError):
    """A caller without a token the server accepts (``streamdag serve --auth-tokens``)."""

    code = "unauthenticated"


class PermissionDenied(StreamdagError):
    """The server was not allowed to do what was asked."""

    code = "permission_denied"


class RepositoryChangesRefused(PermissionDenied):
    def __init__(self, action: str, model: str) -> None:
        self.action = action
        self.model = model
        super().__init__(
            f"cannot {action} model {model}: this server does not allow repository changes; "
            "start it with `streamdag serve --allow-repository-changes` "
            "(or STREAMDAG_SERVE_ALLOW_REPOSITORY_CHANGES=true)"
        )


class ModelError(StreamdagError):
    """The model raised while predicting; ``step`` names where, when known."""

    code = "model_error"

    def __init__(self, message: str, step: str | None = None) -> None:
        self.step = step
        super().__init__(message)


class DeadlineExceeded(StreamdagError):
    code = "deadline_exceeded"


class ModelHung(DeadlineExceeded):
    """So many model calls are still running past their timeout that the worker must be
    replaced: it leaves its group and exits, and its batch is redone elsewhere."""

    def __init__(self, what: str, hung: int, timeout_s: float) -> None:
        self.what = what
        self.hung = hung
        super().__init__(
            f"{what}: {hung} calls still running long past their {timeout_s:g}s timeout; "
            "this worker exits so a fresh one takes over"
        )


class Unavailable(StreamdagError):
    code = "unavailable"


class PayloadLost(StreamdagError):
    """A record names a payload-store object that is gone, unreadable, or whose bytes do
    not match the size and SHA-256 the record gives; the message names the object."""

    code = "data_loss"


# Errors that take just a message; PayloadTooLarge and the *NotFound subclasses take
# domain arguments and are raised where those are known.
_BY_CODE: dict[str, type[StreamdagError]] = {
    cls.code: cls
    for cls in (
        InvalidInput,
        NotFound,
        DeadlineExceeded,
        Unavailable,
        ConfigError,
        KafkaOperationError,
        ResourceExhausted,
        Unauthenticated,
        PermissionDenied,
        PayloadLost,
    )
}


def error_for_code(code: str, message: str, *, step: str | None = None) -> StreamdagError:
    """The error of the tree that carries ``code``, for an error that crossed Kafka (an
    error reply); an unknown code becomes an internal error."""
    if code == ModelError.code:
        return ModelError(message, step=step)
    return _BY_CODE.get(code, StreamdagError)(message)
