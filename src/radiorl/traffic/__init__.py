"""Traffic: arrival processes and batched packet FIFO queues with per-packet timestamps."""
from radiorl.traffic.arrivals import ArrivalTape, poisson_arrivals
from radiorl.traffic.queues import Deliveries, PacketQueues

__all__ = ["ArrivalTape", "poisson_arrivals", "Deliveries", "PacketQueues"]
