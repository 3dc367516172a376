"""Hooks for message brokers: RabbitMQ (pika, aio-pika), Redis, Kafka, SQS

Not written yet (each is active only when its library is installed).
"""

from __future__ import annotations


def install() -> None:
    """Nothing to install yet."""


def uninstall() -> None:
    """Nothing to remove yet."""
