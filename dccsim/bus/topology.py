"""Every exchange, queue, binding and dead-letter queue of dccsim, declared in one place.

``declare_topology`` is idempotent: services call it at start and again after every reconnect, so
a broker that lost its state (restart without persistence, a deleted queue) is restored.
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue
from pamqp.common import FieldTable

from dccsim.config import QueueType

EXCHANGE = "dccsim"
DEAD_LETTER_EXCHANGE = "dccsim.dlx"
EVENTS_EXCHANGE = "dccsim.events"


@dataclass(frozen=True)
class WorkQueue:
    """A durable work queue with its routing keys; its DLQ is ``<name>.dlq``."""

    name: str
    routing_keys: tuple[str, ...]

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.name}.dlq"


# Routing keys: who publishes what.
SR_ACCEPTED = "sr.accepted"  # user_gateway -> transform: a device Service Request passed its checks
GBCS_COMMAND = "gbcs.command"  # transform -> wan: a GBCS command for a device
GBCS_RESPONSE = "gbcs.response"  # wan -> transform: a device response, or E20/E21
GBCS_ALERT = "gbcs.alert"  # wan -> transform: an unsolicited device alert
DUIS_RESPONSE = "duis.response"  # transform -> user_gateway delivery: a signed DUIS Response
INVENTORY_RPC = "rpc.inventory"  # RPC requests to the inventory
TRANSFORM_RPC = "rpc.transform"  # RPC requests to transform (CV 4: build the Pre-Command)

TRANSFORM_REQUESTS = WorkQueue("transform.requests", (SR_ACCEPTED,))
TRANSFORM_RESPONSES = WorkQueue("transform.responses", (GBCS_RESPONSE, GBCS_ALERT))
WAN_COMMANDS = WorkQueue("wan.commands", (GBCS_COMMAND,))
DELIVERY_OUTBOUND = WorkQueue("delivery.outbound", (DUIS_RESPONSE,))
INVENTORY_REQUESTS = WorkQueue("inventory.rpc", (INVENTORY_RPC,))
TRANSFORM_RPC_REQUESTS = WorkQueue("transform.rpc", (TRANSFORM_RPC,))

WORK_QUEUES: tuple[WorkQueue, ...] = (
    TRANSFORM_REQUESTS,
    TRANSFORM_RESPONSES,
    WAN_COMMANDS,
    DELIVERY_OUTBOUND,
    INVENTORY_REQUESTS,
    TRANSFORM_RPC_REQUESTS,
)

# Events exchange (fanout by topic): change notifications for caches, e.g. "inventory.changed".
INVENTORY_CHANGED = "inventory.changed"


def queue_arguments(queue: WorkQueue, queue_type: QueueType) -> FieldTable:
    args: FieldTable = {
        "x-queue-type": queue_type.value,
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        "x-dead-letter-routing-key": queue.name,
    }
    return args


async def declare_work_queue(
    channel: AbstractChannel, work: WorkQueue, queue_type: QueueType = QueueType.CLASSIC
) -> AbstractQueue:
    """Declare one work queue exactly as the topology does (consumers use this, so a robust
    channel re-declares it after a reconnect)."""
    return await channel.declare_queue(
        work.name, durable=True, arguments=queue_arguments(work, queue_type)
    )


async def declare_topology(
    channel: AbstractChannel, queue_type: QueueType = QueueType.CLASSIC
) -> AbstractExchange:
    """Declare everything; returns the main exchange. Safe to call any number of times."""
    exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    dlx = await channel.declare_exchange(
        DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
    )
    await channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    for work in WORK_QUEUES:
        dlq = await channel.declare_queue(
            work.dead_letter_queue, durable=True, arguments={"x-queue-type": queue_type.value}
        )
        await dlq.bind(dlx, routing_key=work.name)
        queue = await declare_work_queue(channel, work, queue_type)
        for key in work.routing_keys:
            await queue.bind(exchange, routing_key=key)
    return exchange
