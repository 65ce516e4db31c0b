"""The one MQTT topic tree of colorgrid (versioned namespace ``colorgrid/v1``).

Gateways publish only under ``colorgrid/v1/gw/{gateway_id}/...`` and read only under
``colorgrid/v1/ctl/...``; that split is what the broker ACL enforces (deploy/mosquitto/acl).

    colorgrid/v1/gw/{gateway_id}/birth        gateway -> cloud  retained, QoS 1
    colorgrid/v1/gw/{gateway_id}/death        gateway -> cloud  retained, QoS 1 (Last Will)
    colorgrid/v1/gw/{gateway_id}/state        gateway -> cloud  QoS 0, once per round
    colorgrid/v1/gw/{gateway_id}/resp         gateway -> cloud  QoS 1, answer to a command
    colorgrid/v1/ctl/vector/{group}           cloud -> gateways QoS 1, signed control vector
    colorgrid/v1/ctl/status                   cloud -> all      retained, QoS 1 (Last Will)
    colorgrid/v1/ctl/gw/{gateway_id}/cmd      cloud -> gateway  QoS 1 (rebirth, config get/set)
    colorgrid/v1/dispatch/{group}             dispatcher -> cloud retained, QoS 1, signed goal
                                              schedule (cloud.dispatch; gateways never read it)

Identifiers (gateway id, group) are 1..64 characters from ``[A-Za-z0-9_.-]`` so that they can
never contain a topic separator or wildcard. Topics are ``str`` here; the MicroPython transport
encodes them to bytes at its boundary (``as_bytes``). MicroPython-compatible: no imports.
"""

NAMESPACE = "colorgrid/v1"
GW_PREFIX = NAMESPACE + "/gw/"
CTL_PREFIX = NAMESPACE + "/ctl/"
DISPATCH_PREFIX = NAMESPACE + "/dispatch/"

BIRTH = "birth"
DEATH = "death"
STATE = "state"
RESP = "resp"
GATEWAY_KINDS = (BIRTH, DEATH, STATE, RESP)

ID_MAX_LEN = 64
_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"


class TopicError(ValueError):
    """A topic or identifier that does not belong to the colorgrid tree."""


def valid_id(name: object) -> bool:
    """True when `name` is a usable gateway id or group name (1..64 chars of [A-Za-z0-9_.-])."""
    if not isinstance(name, str) or not name or len(name) > ID_MAX_LEN:
        return False
    for ch in name:
        if ch not in _ID_CHARS:
            return False
    return True


def check_id(name: object, field: str) -> str:
    """Return `name` unchanged or raise TopicError naming `field`."""
    if not valid_id(name):
        raise TopicError(field + ": invalid identifier " + repr(name)
                         + " (1..64 chars of A-Z a-z 0-9 _ . -)")
    return name  # type: ignore[return-value]


def gateway_topic(gateway_id: str, kind: str) -> str:
    """``colorgrid/v1/gw/{gateway_id}/{kind}`` for kind in birth|death|state|resp."""
    if kind not in GATEWAY_KINDS:
        raise TopicError("kind: unknown gateway topic kind " + repr(kind))
    return GW_PREFIX + check_id(gateway_id, "gateway_id") + "/" + kind


def birth(gateway_id: str) -> str:
    return gateway_topic(gateway_id, BIRTH)


def death(gateway_id: str) -> str:
    return gateway_topic(gateway_id, DEATH)


def state(gateway_id: str) -> str:
    return gateway_topic(gateway_id, STATE)


def resp(gateway_id: str) -> str:
    return gateway_topic(gateway_id, RESP)


def vector(group: str) -> str:
    """``colorgrid/v1/ctl/vector/{group}``: the signed control vector of one control group."""
    return CTL_PREFIX + "vector/" + check_id(group, "group")


def controller_status() -> str:
    """``colorgrid/v1/ctl/status``: retained controller online/offline (Last Will)."""
    return CTL_PREFIX + "status"


def cmd(gateway_id: str) -> str:
    """``colorgrid/v1/ctl/gw/{gateway_id}/cmd``: commands to one gateway."""
    return CTL_PREFIX + "gw/" + check_id(gateway_id, "gateway_id") + "/cmd"


def dispatch(group: str) -> str:
    """``colorgrid/v1/dispatch/{group}``: the signed goal schedule of one control group."""
    return DISPATCH_PREFIX + check_id(group, "group")


# Subscription filters (cloud side and tests).
ALL_GATEWAYS = GW_PREFIX + "+/+"          # every gateway message
ALL_BIRTHS = GW_PREFIX + "+/" + BIRTH
ALL_DEATHS = GW_PREFIX + "+/" + DEATH
ALL_STATES = GW_PREFIX + "+/" + STATE
ALL_RESPS = GW_PREFIX + "+/" + RESP
ALL_VECTORS = CTL_PREFIX + "vector/+"
ALL_DISPATCH = DISPATCH_PREFIX + "+"


def gateway_subscriptions(gateway_id: str, group: str) -> list:
    """The topics one gateway subscribes to (and nothing else): its group's vector, the
    controller status and its own command topic."""
    return [vector(group), controller_status(), cmd(gateway_id)]


def parse(topic) -> tuple:
    """Classify a topic (str or bytes) of the tree.

    Returns ``("gw", gateway_id, kind)``, ``("vector", group, "")``, ``("status", "", "")``,
    ``("cmd", gateway_id, "")`` or ``("dispatch", group, "")``; raises TopicError for anything else.
    """
    if isinstance(topic, (bytes, bytearray)):
        try:
            topic = bytes(topic).decode()
        except Exception:
            raise TopicError("topic: not UTF-8")
    if not isinstance(topic, str):
        raise TopicError("topic: not a string")
    if topic.startswith(GW_PREFIX):
        parts = topic[len(GW_PREFIX):].split("/")
        if len(parts) == 2 and valid_id(parts[0]) and parts[1] in GATEWAY_KINDS:
            return ("gw", parts[0], parts[1])
    elif topic.startswith(CTL_PREFIX):
        parts = topic[len(CTL_PREFIX):].split("/")
        if len(parts) == 1 and parts[0] == "status":
            return ("status", "", "")
        if len(parts) == 2 and parts[0] == "vector" and valid_id(parts[1]):
            return ("vector", parts[1], "")
        if len(parts) == 3 and parts[0] == "gw" and valid_id(parts[1]) and parts[2] == "cmd":
            return ("cmd", parts[1], "")
    elif topic.startswith(DISPATCH_PREFIX):
        name = topic[len(DISPATCH_PREFIX):]
        if valid_id(name):
            return ("dispatch", name, "")
    raise TopicError("topic: not in the colorgrid/v1 tree: " + repr(topic))


def as_bytes(topic) -> bytes:
    """Topic as bytes (what umqtt wants on MicroPython)."""
    if isinstance(topic, bytes):
        return topic
    return topic.encode()
