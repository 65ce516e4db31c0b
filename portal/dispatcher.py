"""How the portal hands a signed goal schedule to the controller.

Contract `Dispatcher.send(group, payload) -> bool`: True when the payload was delivered to a
broker (retained, QoS 1, PUBACK received), False when there is no broker and the caller gets the
signed payload back to deliver it itself; `DispatchFailed` when a broker was configured but did
not take it. Implementations: `MqttDispatcher` (`cloud.dispatch.publish_dispatch`),
`ReturnDispatcher` (no broker), `FakeDispatcher` (records what it was given; can be told to fail).

`Signer` holds the dispatcher's key (`key_id`, HMAC key) and signs with `cloud.dispatch.make_dispatch`,
the same call `colorgrid dispatch` uses, so the controller verifies portal dispatches with the
keys of its `--dispatch-key-file`.
"""
from __future__ import annotations

from typing import Protocol


class DispatchFailed(RuntimeError):
    """A configured broker did not take a dispatch (the message names the broker)."""


class Dispatcher(Protocol):
    def send(self, group: str, payload: bytes) -> bool: ...


class MqttDispatcher:
    def __init__(self, url: str, username: str | None = None, password: str | None = None,
                 timeout_s: float = 10.0) -> None:
        from cloud.service import parse_broker_url

        parse_broker_url(url)              # ServiceError for a bad URL, at configuration time
        self.url = url
        self.username = username
        self.password = password
        self.timeout_s = timeout_s

    def send(self, group: str, payload: bytes) -> bool:
        from cloud.dispatch import PublishError, publish_dispatch

        try:
            publish_dispatch(self.url, group, payload, self.username, self.password, self.timeout_s)
        except PublishError as exc:
            raise DispatchFailed(f"broker: {exc}") from None
        return True


class ReturnDispatcher:
    """No broker configured: nothing is sent; the API returns the signed payload."""

    def send(self, group: str, payload: bytes) -> bool:
        return False


class FakeDispatcher:
    """Records (group, payload) pairs; `fail_with` set to a message makes the next sends fail."""

    def __init__(self, published: bool = True) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.published = published
        self.fail_with: str | None = None

    def send(self, group: str, payload: bytes) -> bool:
        if self.fail_with:
            raise DispatchFailed(f"broker: {self.fail_with}")
        self.sent.append((group, payload))
        return self.published


class Signer:
    """The dispatcher's HMAC key: `sign(...)` = `cloud.dispatch.make_dispatch` with it."""

    def __init__(self, key_id: str, key: bytes) -> None:
        self.key_id = key_id
        self._key = key

    def sign(self, group: str, dispatch_id: int, points, issued_ts_ms: int, valid_until_ts_ms: int) -> bytes:
        from cloud.dispatch import make_dispatch

        return make_dispatch(group, dispatch_id, points, issued_ts_ms, valid_until_ts_ms, self.key_id, self._key)
