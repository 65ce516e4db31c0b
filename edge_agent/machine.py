"""Tier-slice four-state machines of one gateway, driven by the table in ``states.py``.

Slices live in parallel lists indexed by slice number j (fixed order: devices sorted by id, then
tier index), so stepping is a loop over ints, cheap on a microcontroller and identical on CPython
and MicroPython. One round at time t (``step_timers`` then ``step_switching``):

1. timers: a refractory slice whose timer end <= t becomes flexible (ER -> EF, DR -> DF); a slice
   held by a customer override whose override end <= t is released (ER -> EF).
2. switching: for every flexible slice, in slice order, exactly one 24-bit uniform draw u;
   EF switches off (-> DR) iff u < q_off[tier], DF switches on (-> ER) iff u < q_on[tier], where
   q = round(p * 2**24) so the switching probability is q / 2**24 (integers only: bit-identical on
   every runtime). A slice that just left refractory in step 1 may switch in step 2.
3. a switch starts a refractory timer drawn in integer ms: entering ER lasts
   t_ef_ms + U{0..t_ev_ms}, entering DR lasts t_df_ms + U{0..t_dv_ms} (one more draw).

Safety: a refractory or held slice never switches (the table has no SWITCH from ER/DR and held
slices are not flexible); a slice of the black tier (k - 1) is never switched off, whatever q_off.
"""

from edge_agent.params import AgentParams
from edge_agent.prng import Prng
from edge_agent.states import DR, EF, ER, FLEXIBLE, OVERRIDE, RELEASE, SWITCH, TIMER, next_state

TWO24 = 16777216


def probability_to_q(p: float) -> int:
    """Switching threshold for a probability p in [0, 1]: round(p * 2**24), clamped to [0, 2**24]."""
    q = int(p * TWO24 + 0.5)
    if q < 0:
        return 0
    if q > TWO24:
        return TWO24
    return q


class SliceMachines:
    """The tier-slice machines of one gateway.

    ``tiers[j]`` is the tier of slice j; ``black`` the never-disabled tier index; ``params`` an
    ``AgentParams``; ``prng`` a ``Prng``. Public lists (read-only for callers): ``state``,
    ``timer_end_ms`` (end of the refractory period or override, meaningful in ER/DR), ``held``
    (customer override in force). Counters: ``switches_on``, ``switches_off`` per slice.
    """

    def __init__(self, tiers: list, black: int, params: AgentParams, prng: Prng) -> None:
        self.tiers = list(tiers)
        self.black = black
        self.params = params
        self.prng = prng
        n = len(self.tiers)
        self.state = [EF] * n
        self.timer_end_ms = [0] * n
        self.held = [False] * n
        self.switches_on = [0] * n
        self.switches_off = [0] * n

    def __len__(self) -> int:
        return len(self.state)

    def fire(self, j: int, trigger: int, timer_end_ms: int = 0) -> int:
        """Apply ``trigger`` to slice j through the transition table; returns the new state."""
        new = next_state(self.state[j], trigger)
        self.state[j] = new
        self.timer_end_ms[j] = timer_end_ms
        return new

    def step_timers(self, now_ms: int) -> int:
        """Step 1 of a round: end expired refractory periods and overrides. Returns #transitions."""
        moved = 0
        state = self.state
        end = self.timer_end_ms
        held = self.held
        for j in range(len(state)):
            if end[j] > now_ms or not (state[j] == ER or state[j] == DR):
                continue
            if held[j]:
                held[j] = False
                self.fire(j, RELEASE)
            else:
                self.fire(j, TIMER)
            moved += 1
        return moved

    def step_switching(self, q_on: list, q_off: list, now_ms: int) -> tuple:
        """Step 2-3 of a round with per-tier thresholds q_on, q_off (ints in [0, 2**24]).

        Returns (n_on, n_off), the numbers of slices switched on and off."""
        n_on = 0
        n_off = 0
        prng = self.prng
        params = self.params
        state = self.state
        for j in range(len(state)):
            s = state[j]
            if not FLEXIBLE[s] or self.held[j]:
                continue
            tier = self.tiers[j]
            u = prng.next_u24()
            if s == EF:
                if tier != self.black and u < q_off[tier]:
                    end = now_ms + params.t_df_ms + prng.below(params.t_dv_ms + 1)
                    self.fire(j, SWITCH, end)
                    self.switches_off[j] += 1
                    n_off += 1
            elif u < q_on[tier]:  # s == DF
                end = now_ms + params.t_ef_ms + prng.below(params.t_ev_ms + 1)
                self.fire(j, SWITCH, end)
                self.switches_on[j] += 1
                n_on += 1
        return n_on, n_off

    def hold(self, j: int, until_ms: int) -> None:
        """Customer override of slice j until ``until_ms``: enabled, refractory (ER), not switchable."""
        self.fire(j, OVERRIDE, until_ms)
        self.held[j] = True

    def count(self, state: int) -> int:
        """Number of slices in ``state``."""
        n = 0
        for s in self.state:
            if s == state:
                n += 1
        return n
