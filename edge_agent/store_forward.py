"""Bounded store-and-forward queue for reports produced while the gateway is offline.

FIFO of (topic, payload) up to ``capacity`` entries; when full, the oldest entry is dropped
(the newest state matters most) and counted in ``dropped``. ``depth`` is exposed in every state
report (``store_depth``) and in the agent's metrics. MicroPython-compatible.
"""


class StoreForward:
    def __init__(self, capacity: int = 256) -> None:
        if capacity < 1:
            raise ValueError("store_forward: capacity must be >= 1")
        self.capacity = capacity
        self.items = []  # type: list
        self.dropped = 0

    @property
    def depth(self) -> int:
        return len(self.items)

    def push(self, item) -> None:
        self.items.append(item)
        if len(self.items) > self.capacity:
            self.items.pop(0)
            self.dropped += 1

    def peek(self):
        return self.items[0] if self.items else None

    def pop(self):
        """Remove and return the oldest entry (call after it was sent successfully)."""
        return self.items.pop(0)
