"""``streamdag broker start|stop|status|install``: the local Kafka for development and tests."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
from tqdm import tqdm

from streamdag.broker import SECURITY_MODES, ClusterInfo, LocalCluster, Security, jars
from streamdag.settings import get_settings

__all__ = ["broker", "fetch_kafka_jars"]

_data_dir = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Broker data folder [env STREAMDAG_BROKER_DATA_DIR; default "
    "~/.local/state/streamdag/broker, or under $XDG_STATE_HOME]",
)


def _cluster(data_dir: Path | None) -> LocalCluster:
    settings = get_settings()
    return LocalCluster(
        data_dir or settings.broker_data_dir,
        libs_dir=settings.kafka_libs,
        java_home=settings.java_home,
        heap=settings.broker_heap,
    )


def fetch_kafka_jars(*, complete: bool = False) -> None:
    """Fetch Kafka's jars into ``kafka_libs`` unless it holds Kafka already (``complete``:
    unless it holds every jar of the list), with a progress bar on stderr."""
    settings = get_settings()
    folder = settings.kafka_libs
    if not complete and jars.has_kafka(folder):
        return
    todo = jars.missing(folder)
    if not todo:
        return
    click.echo(
        f"fetching Apache Kafka {jars.KAFKA_VERSION}: {len(todo)} jars from "
        f"{settings.kafka_repository} into {folder}",
        err=True,
    )
    with tqdm(total=len(todo), unit="jar", file=sys.stderr, leave=False) as bar:
        fetched = 0

        def done(artifact: jars.Artifact, size: int) -> None:
            nonlocal fetched
            fetched += size
            bar.set_postfix_str(f"{fetched / 1e6:.1f} MB", refresh=False)
            bar.update(1)

        jars.install(folder, repository=settings.kafka_repository, on_fetched=done)
    click.echo(f"fetched {len(todo)} jars ({fetched / 1e6:.1f} MB), checksums verified", err=True)


def _pids(info: ClusterInfo) -> str:
    return ", ".join(str(node.pid) for node in info.nodes if node.pid is not None)


@click.group()
def broker() -> None:
    """Run a local Apache Kafka (KRaft) broker or cluster for development and tests."""


@broker.command()
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Client port of node 1 on 127.0.0.1; node i listens on PORT+i-1 "
    "[default: the recorded one, else 9092]",
)
@click.option(
    "--nodes",
    type=click.IntRange(1, 5),
    default=None,
    help="Nodes of the cluster, each broker and controller; 3 gives replication factor 3 "
    "and min.insync.replicas 2 [default: the recorded count, else 1]",
)
@click.option(
    "--security",
    type=click.Choice(SECURITY_MODES),
    default=None,
    help="sasl_ssl: TLS with a local CA and a SCRAM-SHA-512 user; clients connect with "
    "the printed client.properties [default: the recorded mode, else plaintext]",
)
@click.option(
    "--node",
    "node_id",
    type=click.IntRange(1),
    default=None,
    help="Start only this node of a recorded cluster (after a stop or a crash), with its data.",
)
@_data_dir
@click.option(
    "--timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to wait for the broker to accept produce and consume.",
)
def start(
    port: int | None,
    nodes: int | None,
    security: Security | None,
    node_id: int | None,
    data_dir: Path | None,
    timeout: float,
) -> None:
    """Start the broker in the background; print its bootstrap list when ready (and, when
    secured, the path of client.properties on a second line). Fetches Kafka's jars first
    if they are not there yet (see `install`)."""
    fetch_kafka_jars()
    cluster = _cluster(data_dir)
    began = time.monotonic()
    if node_id is not None:
        if port is not None or nodes is not None or security is not None:
            raise click.UsageError(
                "--node starts a recorded node: drop --port, --nodes, --security"
            )
        info = cluster.start_node(node_id, timeout=timeout)
        what = f"node {node_id} started"
    else:
        info = cluster.start(nodes=nodes, port=port, security=security, timeout=timeout)
        what = "broker" if len(info.nodes) == 1 else f"{len(info.nodes)}-node cluster"
        what += " ready"
    click.echo(info.bootstrap)
    if info.client_properties is not None:
        click.echo(str(info.client_properties))
    click.echo(
        f"{what} in {time.monotonic() - began:.1f}s (pid {_pids(info)}, data {info.data_dir})",
        err=True,
    )
    if info.client_properties is not None:
        click.echo(f"clients connect with --kafka-config {info.client_properties}", err=True)


@broker.command()
@click.option(
    "--urls",
    is_flag=True,
    help="Only print the URL of every jar, one a line, to fetch them by other means.",
)
def install(urls: bool) -> None:
    """Fetch Apache Kafka's jars from Maven Central (or STREAMDAG_KAFKA_REPOSITORY), each
    checked against its published checksum, into STREAMDAG_KAFKA_LIBS (default
    ~/.cache/streamdag/kafka/<version>, or under $XDG_CACHE_HOME); jars already there are
    kept. `start` does this by itself the first time."""
    settings = get_settings()
    if urls:
        for artifact in jars.ARTIFACTS:
            click.echo(artifact.url(settings.kafka_repository))
        return
    fetch_kafka_jars(complete=True)
    click.echo(f"Apache Kafka {jars.KAFKA_VERSION} jars in {settings.kafka_libs}")


@broker.command()
@_data_dir
def stop(data_dir: Path | None) -> None:
    """Stop the broker, every node of a cluster, cleanly (SIGTERM, then wait)."""
    info = _cluster(data_dir).stop()
    click.echo(f"stopped broker pid {_pids(info)} ({info.bootstrap})")


@broker.command()
@_data_dir
@click.option("--json", "as_json", is_flag=True, help="Print the cluster and its nodes as JSON.")
def status(data_dir: Path | None, as_json: bool) -> None:
    """Say whether the broker (every node of a cluster) runs, and where; exit 1 unless
    every node runs."""
    cluster = _cluster(data_dir)
    info = cluster.status()
    if as_json:
        click.echo(json.dumps(_as_json(cluster.data_dir, info), indent=2))
    elif info is None or not any(node.running for node in info.nodes):
        click.echo(f"not running (data {cluster.data_dir})")
    elif len(info.nodes) == 1:
        click.echo(f"running at {info.bootstrap} (pid {_pids(info)}, data {info.data_dir})")
    else:
        up = sum(node.running for node in info.nodes)
        click.echo(f"{up} of {len(info.nodes)} nodes running (data {info.data_dir})")
        for node in info.nodes:
            state = f"running (pid {node.pid})" if node.running else "not running"
            click.echo(f"  node {node.id} at {node.bootstrap}: {state}")
    if info is None or not info.running:
        raise click.exceptions.Exit(1)


def _as_json(data_dir: Path, info: ClusterInfo | None) -> dict[str, object]:
    """The status without secrets: client.properties is named, never read out."""
    if info is None:
        return {"data_dir": str(data_dir), "running": False, "nodes": []}
    return {
        "data_dir": str(info.data_dir),
        "cluster_id": info.cluster_id,
        "running": info.running,
        "bootstrap": info.bootstrap,
        "security": info.security,
        "client_properties": None
        if info.client_properties is None
        else str(info.client_properties),
        "nodes": [
            {"id": n.id, "pid": n.pid, "port": n.port, "running": n.running} for n in info.nodes
        ],
    }
