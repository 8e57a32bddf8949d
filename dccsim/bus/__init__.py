"""The message bus: envelope, topology and the RabbitMQ client."""

from dccsim.bus.client import Bus, Permanent, PublishError, RpcError
from dccsim.bus.envelope import Envelope, EnvelopeError

__all__ = ["Bus", "Envelope", "EnvelopeError", "Permanent", "PublishError", "RpcError"]
