"""The bus: how services publish and consume records.

One interface (:class:`Bus` giving :class:`Producer` and :class:`Consumer`), two implementations:
``vigil.bus.kafka`` on kafka-python for everything real, ``vigil.bus.memory`` for unit and
scenario tests. Delivery is at-least-once; consumers commit offsets by hand, through the one
commit protocol in ``checkpoint.py`` (``retry.py``: surviving a broker that goes away).
"""

from vigil.bus.base import (
    AckingProducer,
    Bus,
    Consumer,
    DeadLetters,
    Header,
    Producer,
    Record,
    TopicPartition,
)

__all__ = ["AckingProducer", "Bus", "Consumer", "DeadLetters", "Header", "Producer", "Record", "TopicPartition"]
