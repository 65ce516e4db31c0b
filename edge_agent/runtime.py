"""The gateway agent: MQTT session + input -> process -> output cycle around ``GatewayCore``.

Per round (``round_ms``):
  input    drain incoming messages: vectors (schema, then ``security.VectorGuard``: group,
           signature, expiry, lifetime, replay), controller status (signed; a status of an
           older controller session is ignored), commands (``CmdGuard``);
           each rejection is logged with its reason and counted, never raised;
  process  choose the vector of this round and apply it, then ``core.step(now_ms)``:
             fail-safe (p_on = 1, p_off = 0 for every tier) when the controller's retained
               status says offline, or no valid vector was accepted yet or for ``fail_safe_ms``
               (as GatewayCore does on its own);
             else the newest vector accepted since the last round, applied to this round only
               (still unexpired at the round; the controller's one-round-ahead prediction
               assumes exactly one application per vector);
             else hold (p_on = p_off = 0: nothing switches, timers still run);
           the black tier's p_off is forced to 0 here and again in the core;
  output   publish the state report (QoS 0) or, offline, queue it in the bounded store.

Session (docs/mqtt.md): every (re)connect advances ``bd_seq`` (mod 256), registers the Last
Will death, subscribes to the gateway's control topics, publishes the retained birth (seq 0) and
flushes the store; ``seq`` then advances (mod 256) on every gateway message. Reconnects follow
``reconnect.Backoff``. MicroPython-compatible (no logging/typing; ``log`` is a callable).
"""
from edge_agent import codec, security, topics
from edge_agent.reconnect import Backoff
from edge_agent.store_forward import StoreForward
from edge_agent.transport import TransportError

# settable by a signed config_set command: name -> (min, max)
SETTABLE = {"fail_safe_ms": (1000, 3600000), "vector_max_ttl_ms": (1000, 600000),
            "round_ms": (100, 600000)}
MAX_KEPT_REJECTIONS = 32
MAX_REASON_CHARS = 120   # vec_reject_reason in the state report


def _is_vector_topic(topic) -> bool:
    try:
        return topics.parse(topic)[0] == "vector"
    except topics.TopicError:
        return False


def print_log(level: str, message: str) -> None:
    print(level + " " + message)


def inventory(core) -> list:
    """Birth inventory: ``{"device_id", "kind", "tier_w"}`` per device (sorted by id), rated W
    (``rated_w``, else the last demand read) split per tier by the device's tier shares with
    largest remainder, so the tier watts add up exactly to the device."""
    from edge_agent.device import shares_to_ppm, split_w
    last = getattr(core, "_demand_w", None)
    out = []
    for n, dev in enumerate(core.devices):
        rated = getattr(dev, "rated_w", None)
        if rated is None:
            rated = last[n] if last is not None else 0
        entry = {"device_id": dev.device_id,
                 "tier_w": split_w(int(rated), shares_to_ppm(dev.tier_shares, core.k))}
        kind = getattr(dev, "kind", "")
        if topics.valid_id(kind):
            entry["kind"] = kind
        out.append(entry)
    return out


class GatewayAgent:
    """One gateway's MQTT agent. Drive it with ``tick(now_ms, wait_ms)`` (or ``run_forever``)."""

    def __init__(self, core, transport, gateway_id: str, group: str, keys: dict, rng,
                 store_capacity: int = 256, backoff_base_ms: int = 500,
                 backoff_cap_ms: int = 30000, vector_max_ttl_ms: int = 60000,
                 max_skew_ms: int = 5000, bd_seq: int = 255, log=None,
                 report_key=None, report_key_id=None) -> None:
        self.core = core
        self.transport = transport
        self.gateway_id = codec.check_id(gateway_id, "gateway_id")
        self.group = codec.check_id(group, "group")
        self.k = core.params.k
        self.round_ms = core.params.round_ms
        self.fail_safe_ms = core.params.fail_safe_ms
        self.keys = keys
        # the gateway's own key: signs every message it publishes (birth, state, death, resp)
        # so a broker client without it cannot speak for this gateway (cloud.enrollment)
        self.report_key = report_key
        self.report_key_id = codec.check_id(report_key_id or gateway_id, "report_key_id")
        self.guard = security.VectorGuard(keys, group, vector_max_ttl_ms, max_skew_ms)
        self.cmd_guard = security.CmdGuard(keys)
        self.store = StoreForward(store_capacity)
        self.backoff = Backoff(rng, backoff_base_ms, backoff_cap_ms)
        self.log = log or print_log
        self.bd_seq = bd_seq % 256
        self.seq = 0
        self.connected = False
        # None = unknown until the retained status arrives
        self.controller_online = None  # type: bool | None
        self.status_session_ms = None  # type: int | None
        # newest accepted vector not yet applied
        self.pending = None  # type: dict | None
        self.last_vector_ms = None  # type: int | None
        self.vector_round_id = -1
        self.fail_safe = False
        self.started_ms = None  # type: int | None
        self.next_round_ms = 0
        self.round_index = 0
        # the last MAX_KEPT_REJECTIONS (topic, reason) pairs
        self.rejections = []  # type: list
        # vectors rejected since start and the last reason: told to the controller in each state
        self.vec_rejected = 0
        self.vec_reject_reason = ""
        self.metrics = {"rounds": 0, "reports_sent": 0, "reports_stored": 0, "connects": 0,
                        "connect_failures": 0, "connection_losses": 0, "births": 0,
                        "vectors_accepted": 0, "vectors_applied": 0, "rejected": 0,
                        "fail_safe_rounds": 0, "commands": 0, "rejected_foreign_topic": 0}

    # ------------------------------------------------------------------ session
    def params(self) -> dict:
        p = self.core.params
        return {"k": self.k, "round_ms": self.round_ms, "fail_safe_ms": self.fail_safe_ms,
                "t_ef_ms": p.t_ef_ms, "t_ev_ms": p.t_ev_ms, "t_df_ms": p.t_df_ms,
                "t_dv_ms": p.t_dv_ms, "vector_max_ttl_ms": self.guard.max_ttl_ms,
                "store_capacity": self.store.capacity}

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) % 256
        return self.seq

    def _signed(self, payload: bytes) -> bytes:
        if self.report_key is None:
            return payload
        return security.sign_report(payload, self.report_key_id, self.report_key)

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.transport.publish(topic, self._signed(payload), qos, retain)

    def publish_birth(self, now_ms: int) -> None:
        payload = codec.encode_birth(self.gateway_id, self.group, self.bd_seq, now_ms,
                                     list(self.core.params.tier_names),
                                     inventory(self.core), self.params())
        self.seq = 0
        self._publish(topics.birth(self.gateway_id), payload, 1, True)
        self.metrics["births"] += 1

    def _try_connect(self, now_ms: int) -> None:
        bd_seq = (self.bd_seq + 1) % 256
        will = (topics.death(self.gateway_id),
                self._signed(codec.encode_death(self.gateway_id, bd_seq, now_ms, "lost")), 1, True)
        try:
            self.transport.connect(will)
        except TransportError as exc:
            self.metrics["connect_failures"] += 1
            delay = self.backoff.failure(now_ms)
            self.log("warning", "connect failed (%s); next try in %d ms" % (exc, delay))
            return
        self.bd_seq = bd_seq
        self.connected = True
        try:
            for topic in topics.gateway_subscriptions(self.gateway_id, self.group):
                self.transport.subscribe(topic, 1)
            self.publish_birth(now_ms)
            self._flush()
        except TransportError as exc:
            self._lost(now_ms, exc)
            return
        self.backoff.success()
        self.metrics["connects"] += 1
        self.log("info", "connected, bd_seq %d" % self.bd_seq)

    def _lost(self, now_ms: int, exc) -> None:
        self.connected = False
        self.metrics["connection_losses"] += 1
        delay = self.backoff.failure(now_ms)
        self.log("warning", "connection lost (%s); reconnect in %d ms" % (exc, delay))

    def shutdown(self, now_ms: int) -> None:
        """Clean stop: retained death (reason shutdown, with seq), then disconnect."""
        if self.connected:
            try:
                self._publish(topics.death(self.gateway_id),
                              codec.encode_death(self.gateway_id, self.bd_seq, now_ms,
                                                 "shutdown", self._next_seq()), 1, True)
                self.transport.disconnect()
            except TransportError as exc:
                self.log("warning", "shutdown: %s" % exc)
        self.connected = False

    # ------------------------------------------------------------------ input
    def _reject(self, topic, reason: str) -> None:
        self.metrics["rejected"] += 1
        self.rejections.append((topic, reason))
        if len(self.rejections) > MAX_KEPT_REJECTIONS:
            self.rejections.pop(0)
        self.log("warning", "rejected %r: %s" % (topic, reason))

    def _reject_vector(self, topic, reason: str) -> None:
        self.vec_rejected += 1
        self.vec_reject_reason = reason[:MAX_REASON_CHARS]
        self._reject(topic, reason)

    def handle(self, topic, payload, now_ms: int) -> None:
        """Process one incoming message; never raises (bad input is logged and counted)."""
        try:
            kind, name, msg = codec.decode(topic, payload)
        except codec.CodecError as exc:
            if _is_vector_topic(topic):
                self._reject_vector(topic, str(exc))
            else:
                self._reject(topic, str(exc))
            return
        try:
            if kind == "vector":
                self._on_vector(topic, msg, now_ms)
            elif kind == "status":
                self._on_status(topic, msg)
            elif kind == "cmd" and name == self.gateway_id:
                self._on_cmd(topic, msg, now_ms)
            else:
                self.metrics["rejected_foreign_topic"] += 1
                self._reject(topic, "topic: not one this gateway reads")
        except TransportError as exc:
            self._lost(now_ms, exc)
        except Exception as exc:  # a bug must not take the gateway down
            self._reject(topic, "internal error: %r" % (exc,))

    def _on_status(self, topic, msg: dict) -> None:
        """Signed status only; a status of an older controller session (a replayed Will) is
        ignored. An offline status puts the gateway in fail-safe at its next round."""
        reason = security.verify(msg, self.keys)
        if not reason and self.status_session_ms is not None and msg["session_ms"] < self.status_session_ms:
            reason = "older session (%d < %d)" % (msg["session_ms"], self.status_session_ms)
        if reason:
            self._reject(topic, "status: " + reason)
            return
        self.status_session_ms = msg["session_ms"]
        if msg["online"] != self.controller_online:
            self.log("info", "controller %s is %s" % (
                msg["controller_id"], "online" if msg["online"] else "offline"))
        self.controller_online = msg["online"]

    def _on_vector(self, topic, msg: dict, now_ms: int) -> None:
        if len(msg["p_on"]) != self.k or len(msg["p_off"]) != self.k:
            self._reject_vector(topic, "p_on: %d tiers, this gateway has %d" % (len(msg["p_on"]), self.k))
            return
        reason = self.guard.check(msg, now_ms)
        if reason:
            self._reject_vector(topic, reason)
            return
        self.pending = msg
        self.last_vector_ms = now_ms
        self.controller_online = True  # a fresh signed vector proves it
        self.metrics["vectors_accepted"] += 1

    def _on_cmd(self, topic, msg: dict, now_ms: int) -> None:
        reason = self.cmd_guard.check(msg, now_ms)
        if reason:
            self._reject(topic, reason)
            return
        self.metrics["commands"] += 1
        ok, error = True, ""
        if msg["cmd"] == "config_set":
            error = self._config_set(msg["params"])
            ok = error == ""
        if msg["cmd"] == "rebirth" or (msg["cmd"] == "config_set" and ok):
            self.publish_birth(now_ms)
        payload = codec.encode_resp(self.gateway_id, self.bd_seq, self._next_seq(), now_ms,
                                    msg["txn"], ok, error, self.params())
        self._publish(topics.resp(self.gateway_id), payload, 1, False)

    def _config_set(self, params: dict) -> str:
        """Validate every entry first, then apply all or nothing; returns "" or the error."""
        for name in sorted(params):
            if name not in SETTABLE:
                return "%s: not settable (settable: %s)" % (name, ", ".join(sorted(SETTABLE)))
            lo, hi = SETTABLE[name]
            try:
                codec.check_int(params[name], name, lo, hi)
            except codec.CodecError as exc:
                return str(exc)
        for name in sorted(params):
            if name == "fail_safe_ms":
                self.fail_safe_ms = params[name]
            elif name == "vector_max_ttl_ms":
                self.guard.max_ttl_ms = params[name]
            elif name == "round_ms":
                self.round_ms = params[name]
        return ""

    # ------------------------------------------------------------------ process
    def _control(self, now_ms: int) -> tuple:
        """(p_on, p_off, vector_round_id, fail_safe) for the round at now_ms."""
        if (self.controller_online is False or self.last_vector_ms is None
                or now_ms - self.last_vector_ms >= self.fail_safe_ms):
            self.pending = None
            return [1.0] * self.k, [0.0] * self.k, self.vector_round_id, True
        vec = self.pending
        self.pending = None
        if vec is not None and now_ms >= vec["expires_ts_ms"]:
            self._reject_vector(topics.vector(self.group), "expired before its round (round_id %d)"
                                % vec["round_id"])
            vec = None
        if vec is not None:
            self.metrics["vectors_applied"] += 1
            p_off = list(vec["p_off"])
            p_off[self.k - 1] = 0.0
            return list(vec["p_on"]), p_off, vec["round_id"], False
        return [0.0] * self.k, [0.0] * self.k, self.vector_round_id, False

    def run_round(self, now_ms: int) -> None:
        p_on, p_off, round_id, fail_safe = self._control(now_ms)
        if fail_safe != self.fail_safe:
            self.log("warning" if fail_safe else "info",
                     "fail-safe %s" % ("entered" if fail_safe else "left"))
        self.fail_safe = fail_safe
        self.vector_round_id = round_id
        if fail_safe:
            self.metrics["fail_safe_rounds"] += 1
        self.core.apply_control(p_on, p_off, now_ms)
        self.core.step(now_ms)
        agg = self.core.aggregate()
        self.metrics["rounds"] += 1
        report = {"ts_ms": now_ms, "round": self.round_index, "p_w": agg.w, "count": agg.count,
                  "vector_round_id": self.vector_round_id, "fail_safe": fail_safe}
        self.round_index += 1
        self._emit(report, now_ms)

    # ------------------------------------------------------------------ output
    def _send_state(self, report: dict) -> None:
        payload = codec.encode_state(self.gateway_id, self.group, self.bd_seq, (self.seq + 1) % 256,
                                     report["ts_ms"], report["round"], report["p_w"],
                                     report["count"], report["vector_round_id"],
                                     report["fail_safe"], self.store.depth,
                                     self.vec_rejected, self.vec_reject_reason)
        self._publish(topics.state(self.gateway_id), payload, 0, False)
        self.seq = (self.seq + 1) % 256
        self.metrics["reports_sent"] += 1

    def _flush(self) -> None:
        while self.store.depth:
            item = self.store.peek()
            self.store.pop()
            try:
                self._send_state(item)
            except TransportError:
                self.store.items.insert(0, item)
                raise

    def _emit(self, report: dict, now_ms: int) -> None:
        if self.connected:
            try:
                self._flush()
                self._send_state(report)
                return
            except TransportError as exc:
                self._lost(now_ms, exc)
        self.store.push(report)
        self.metrics["reports_stored"] += 1

    # ------------------------------------------------------------------ cycle
    def tick(self, now_ms: int, wait_ms: int = 0) -> None:
        """Connect when due, take in messages (waiting up to wait_ms), run the round when due."""
        if self.started_ms is None:
            self.started_ms = now_ms
            self.next_round_ms = now_ms
        if self.guard.min_issued_ms is None:   # replay memory is RAM: nothing from before the start
            self.guard.min_issued_ms = self.started_ms
        if not self.connected and self.backoff.due(now_ms):
            self._try_connect(now_ms)
        if self.connected:
            try:
                messages = self.transport.poll(wait_ms)
            except TransportError as exc:
                self._lost(now_ms, exc)
                messages = []
            for topic, payload in messages:
                self.handle(topic, payload, now_ms)
        if now_ms >= self.next_round_ms:
            self.run_round(now_ms)
            self.next_round_ms += self.round_ms
            if self.next_round_ms <= now_ms:  # fell behind: skip, never burst
                self.next_round_ms = now_ms + self.round_ms

    def run_forever(self, clock_ms, sleep_ms, should_stop=None, poll_max_ms: int = 200) -> None:
        """Real-time loop: ``clock_ms()`` UTC epoch ms, ``sleep_ms(ms)`` when offline."""
        while should_stop is None or not should_stop():
            now = clock_ms()
            wait = 0
            if self.next_round_ms is not None:
                wait = max(0, min(poll_max_ms, self.next_round_ms - now))
            was_connected = self.connected
            self.tick(now, wait)
            if not was_connected and not self.connected and wait:
                sleep_ms(wait)
