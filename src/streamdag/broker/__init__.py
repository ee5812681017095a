"""A local Apache Kafka (KRaft) broker for development, tests and the demo."""

from streamdag.broker.launcher import BrokerInfo, LocalBroker, free_port

__all__ = ["BrokerInfo", "LocalBroker", "free_port"]
