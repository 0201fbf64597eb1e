"""One batch of raw messages in, alerts + dead letters + changed entity states out.

This is everything between the broker and the sinks, with no I/O: the Faust
agent feeds it batches taken from the input topics, the backtest feeds it
lines of a file. Both therefore produce the same alerts for the same history.

>>> from detectors.engine import Engine
>>> from detectors.rules import load_pack
>>> bp = BatchProcessor(Engine(load_pack().detectors))
>>> res = bp.process([RawMessage(b"not json", "t", 0, 1, None)], {}.get)
>>> [d["reason"] for d in res.dead_letters]
['malformed_json']
"""

from __future__ import annotations

import functools
import heapq
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import msgspec

from detectors import lateness as _lateness
from detectors.engine import Engine, EntityState
from detectors.lateness import LateRecord
from detectors.risk.contagion import LinkMessage, decode_link
from riskflow.alerts import Alert
from riskflow.deadletter import dead_letter
from riskflow.schema import DEFAULT_MAX_BYTES, DEFAULT_MAX_FUTURE_SECONDS, Event, InvalidEvent, parse_event


class RawMessage(NamedTuple):
    value: bytes
    topic: str
    partition: int
    offset: int
    key: bytes | None


class Record(Protocol):
    """What :meth:`BatchProcessor.process` reads of a message: a :class:`RawMessage` offline, an
    aiokafka ``ConsumerRecord`` live. A protocol, not ``RawMessage`` itself: the compiled build
    (mypyc) checks the declared type at run time, and a ConsumerRecord is not a tuple."""

    @property
    def value(self) -> bytes: ...
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...


@dataclass
class BatchResult:
    alerts: list[Alert] = field(default_factory=list)
    dead_letters: list[dict] = field(default_factory=list)
    #: entity id -> (new state, input partition): what to write back to the table
    states: dict[str, tuple[EntityState, int]] = field(default_factory=dict)
    #: (event_type, entity_kind, region) of each valid, non-duplicate event: metric tallies
    counted: list[tuple[str, str, str]] = field(default_factory=list)
    max_event_ts: float = 0.0
    #: messages for the internal links topic, keyed by their ``to`` (live only; see below)
    links: list[LinkMessage] = field(default_factory=list)
    #: events beyond the allowed lateness, for the late-event ledger (detectors/lateness.py)
    late: list[LateRecord] = field(default_factory=list)
    #: events that ran too far ahead of their partition's time (``Lane``), for the same ledger
    ahead: list[LateRecord] = field(default_factory=list)


#: How far (event-time seconds) an event may lie ahead of its partition's watermark and still
#: advance it alone: the default allowed lateness, mirrored (``RISKFLOW_MAX_EVENT_SKEW``).
DEFAULT_MAX_SKEW = 7 * 86_400.0
class Lane:
    """Event-time progress of one input partition: its watermark and its deadline index.

    ``watermark`` is the partition's trusted event time: the largest event time of the
    valid, non-duplicate events seen on it, except that an event more than the processor's
    ``max_skew`` ahead of it does not move it alone (one producer's clock must not fire every
    other entity's deadlines). ``ahead`` holds the times of such events of the current run of
    them, by entity; an event within the skew ends the run. Once two entities run ahead in
    one run (as after a real gap in a sparse partition's events), the watermark moves to the
    earlier of their times: the time both have reached.
    ``heap`` holds ``(deadline, entity_id)`` of entities with pending timed findings (stale
    entries are skipped on pop: the entity's current ``due`` is the truth).

    >>> lane = Lane(1000.0)
    >>> lane.observe(1500.0, "A", 600.0), lane.watermark
    (True, 1500.0)
    >>> lane.observe(9000.0, "B", 600.0), lane.observe(1600.0, "A", 600.0), lane.watermark
    (False, True, 1600.0)
    >>> lane.observe(9000.0, "B", 600.0), lane.observe(8000.0, "C", 600.0), lane.watermark
    (False, False, 8000.0)
    """

    __slots__ = ("ahead", "heap", "watermark")

    def __init__(
        self,
        watermark: float = 0.0,
        heap: list[tuple[float, str]] | None = None,
        ahead: dict[str, float] | None = None,
    ) -> None:
        self.watermark = watermark
        self.heap: list[tuple[float, str]] = [] if heap is None else heap
        self.ahead: dict[str, float] = {} if ahead is None else ahead

    def __reduce__(self) -> tuple[Any, ...]:
        # explicit, for the compiled build (mypyc's native classes do not pickle by themselves)
        return (Lane, (self.watermark, self.heap, self.ahead))

    def observe(self, ts: float, entity_id: str, max_skew: float) -> bool:
        """Account an event at ``ts`` (later than the watermark); False if it ran too far ahead
        to be trusted (the caller ledgers it)."""
        wm = self.watermark
        if ts <= wm + max_skew or not wm:
            self.watermark = ts
            if self.ahead:
                self.ahead = {}
            return True
        ahead = self.ahead
        if ts > ahead.get(entity_id, 0.0):
            ahead[entity_id] = ts
        if len(ahead) >= 2:
            self.watermark = min(ahead.values())
            self.ahead = {}
        return False


class BatchProcessor:
    """Timed rules (``absence``) fire when the watermark of the entity's input
    partition passes their deadline, checked after every event, so firing
    depends only on the order of events within each partition. The lanes live
    in memory; :meth:`rebuild` restores them from the entity states (each
    state records its lane, watermark and next deadline), e.g. after a restart
    or a rebalance.

    ``links_topic``: the name of the internal topic of risk-contagion messages
    (``detectors/risk/contagion.py``). Live, its messages come in among the events
    and the ones a batch produces go out in ``BatchResult.links``. Offline (``None``),
    the messages a batch produces are delivered in-process right after it, until
    none are left, so a backtest sees the same contagion alerts.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_future_seconds: float = DEFAULT_MAX_FUTURE_SECONDS,
        links_topic: str | None = None,
        max_skew: float = DEFAULT_MAX_SKEW,
    ) -> None:
        self.engine = engine
        self.max_bytes = max_bytes
        self.max_future_seconds = max_future_seconds
        self.links_topic = links_topic
        self.max_skew = max_skew
        self.lanes = {}

    def __reduce__(self) -> tuple[Any, ...]:
        # The constructor call, then the lanes (event-time progress) restored by __setstate__:
        # explicit, for the compiled build (mypyc's native classes do not pickle by themselves).
        make = functools.partial(
            BatchProcessor,
            max_bytes=self.max_bytes,
            max_future_seconds=self.max_future_seconds,
            links_topic=self.links_topic,
            max_skew=self.max_skew,
        )
        return (make, (self.engine,), {"lanes": self._lanes})

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.lanes = state["lanes"]

    @property
    def lanes(self) -> dict[str, Lane]:
        return self._lanes

    @lanes.setter
    def lanes(self, lanes: dict[str, Lane]) -> None:
        self._lanes = lanes
        self._lane_of: dict[tuple[str, int], tuple[str, Lane]] = {}  # (topic, partition) -> its lane

    def _lane(self, topic: str, partition: int) -> tuple[str, Lane]:
        name = f"{topic}#{partition}"
        lane = self._lanes.get(name)
        if lane is None:
            lane = self._lanes[name] = Lane()
        named = self._lane_of[(topic, partition)] = (name, lane)
        return named

    def rebuild(self, states: Iterable[EntityState]) -> None:
        """Rebuild every lane's watermark and deadline index from stored entity states."""
        self.lanes = {}
        for st in states:
            if not st.lane:
                continue
            lane = self.lanes.get(st.lane)
            if lane is None:
                lane = self.lanes[st.lane] = Lane()
            wm = st.lane_watermark or st.watermark  # (a state from before lane_watermark: its own)
            if wm > lane.watermark:
                lane.watermark = wm
            if st.due:
                lane.heap.append((st.due, st.entity_id))
        for lane in self.lanes.values():
            heapq.heapify(lane.heap)

    def process(
        self,
        messages: Sequence[Record],
        get_state: Callable[[str], EntityState | None],
        now: float | None = None,
    ) -> BatchResult:
        """Process messages in order. ``get_state`` reads an entity's stored state.

        Within the batch, an entity's state is carried from one event to the
        next in memory; only its final state is returned for writing back.
        """
        now = time.time() if now is None else now
        res = BatchResult()
        states = res.states
        engine = self.engine
        links_topic = self.links_topic
        max_bytes, max_future = self.max_bytes, self.max_future_seconds
        alerts, counted, dead_letters = res.alerts, res.counted, res.dead_letters
        lane_of = self._lane_of
        for msg in messages:
            # attributes, not unpacking: live, these are aiokafka records (RawMessage is their shape)
            value, topic, partition, offset, key = msg.value, msg.topic, msg.partition, msg.offset, msg.key
            if topic == links_topic and links_topic is not None:
                try:
                    link = decode_link(value)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    dead_letters.append(dead_letter(value, "malformed_json", str(exc), topic, partition, offset, key))
                    continue
                self._link(link, res, get_state, partition)
                continue
            try:
                event = parse_event(value, max_bytes=max_bytes, max_future_seconds=max_future, now=now)
            except InvalidEvent as exc:
                dead_letters.append(dead_letter(value, exc.reason, exc.detail, topic, partition, offset, key))
                continue
            eid = event.entity_id
            held = states.get(eid)
            state = held[0] if held is not None else get_state(eid)
            due_before = state.due if state is not None else 0.0
            out = engine.process(state, event)
            if out.duplicate:
                dead_letters.append(
                    dead_letter(
                        value,
                        "duplicate_event",
                        f"event_id {event.event_id!r} was already processed for {eid}",
                        topic,
                        partition,
                        offset,
                        key,
                    )
                )
                continue
            st = out.state
            states[eid] = (st, partition)
            if out.alerts:
                alerts.extend(out.alerts)
            if out.links:
                res.links.extend(out.links)
            if out.late is not None:
                out.late.event = msgspec.Raw(value)
                res.late.append(out.late)
            ts = event.ts
            counted.append((event.event_type, event.entity_kind, event.region))
            if ts > res.max_event_ts:
                res.max_event_ts = ts
            # event-time progress of this input partition (timed rules)
            named = lane_of.get((topic, partition))
            if named is None:
                named = self._lane(topic, partition)
            name, lane = named
            st.lane = name
            if st.due and st.due != due_before:
                heapq.heappush(lane.heap, (st.due, eid))
            if ts > lane.watermark:
                if not lane.observe(ts, eid, self.max_skew):
                    self._ran_ahead(lane, event, st, partition, states, res)
            elif lane.ahead:
                lane.ahead = {}  # an event in time ends a run of events ahead
            st.lane_watermark = lane.watermark
            heap = lane.heap
            if heap and heap[0][0] < lane.watermark:
                self._advance(lane, partition, states, get_state, res)
        if links_topic is None:
            while res.links:
                pending, res.links = res.links, []
                for link in pending:
                    held = states.get(link.to)
                    self._link(link, res, get_state, held[1] if held is not None else 0)
        return res

    def _ran_ahead(
        self,
        lane: Lane,
        event: Event,
        st: EntityState,
        partition: int,
        states: dict[str, tuple[EntityState, int]],
        res: BatchResult,
    ) -> None:
        """An event too far ahead of its partition's time to move it: ledgered, and only its
        own entity's overdue deadlines fire (its clock is trusted for itself, not for others)."""
        res.ahead.append(_lateness.ahead_record(event, lane.watermark, self.max_skew))
        if st.due and st.due < event.ts:
            out = self.engine.advance(st, event.ts)
            states[event.entity_id] = (out.state, partition)
            res.alerts.extend(out.alerts)
            if out.links:
                res.links.extend(out.links)
            if out.state.due:
                heapq.heappush(lane.heap, (out.state.due, event.entity_id))

    def _advance(
        self,
        lane: Lane,
        partition: int,
        states: dict[str, tuple[EntityState, int]],
        get_state: Callable[[str], EntityState | None],
        res: BatchResult,
    ) -> None:
        heap, wm = lane.heap, lane.watermark
        while heap and heap[0][0] < wm:
            due, eid = heapq.heappop(heap)
            held = states.get(eid)
            st = held[0] if held is not None else get_state(eid)
            if st is None or st.due != due:
                continue  # stale entry: the entity's deadline moved since it was indexed
            out = self.engine.advance(st, wm)
            states[eid] = (out.state, partition)
            res.alerts.extend(out.alerts)
            if out.links:
                res.links.extend(out.links)
            if out.state.due:
                heapq.heappush(heap, (out.state.due, eid))

    def _link(
        self,
        link: LinkMessage,
        res: BatchResult,
        get_state: Callable[[str], EntityState | None],
        partition: int,
    ) -> None:
        scorer = self.engine.risk
        if scorer is None:
            return
        held = res.states.get(link.to)
        state = held[0] if held is not None else get_state(link.to)
        if state is None:
            state = EntityState(entity_id=link.to)
        if link.kind == "push":  # contagion feeds the dependent's shown index and level
            res.alerts.extend(scorer.on_push(state, link, self.engine.clock))
        else:
            res.links.extend(scorer.on_link(state, link))
        res.states[link.to] = (state, partition)
