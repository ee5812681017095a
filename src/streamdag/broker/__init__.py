"""A local Apache Kafka (KRaft) broker or cluster for development, tests and the demo."""

from streamdag.broker.cluster import ClusterInfo, LocalCluster, NodeInfo
from streamdag.broker.launcher import BrokerInfo, LocalBroker
from streamdag.broker.layout import SECURITY_MODES, Security
from streamdag.broker.ports import free_port, free_port_run

__all__ = [
    "SECURITY_MODES",
    "BrokerInfo",
    "ClusterInfo",
    "LocalBroker",
    "LocalCluster",
    "NodeInfo",
    "Security",
    "free_port",
    "free_port_run",
]
