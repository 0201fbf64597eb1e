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
from detectors.base import MODEL_SCORES
from detectors.engine import Engine, EntityState, StepFailed, decode_state, encode_state
from detectors.lateness import LateRecord
from detectors.risk import contagion as _contagion
from detectors.risk.contagion import LinkMessage, decode_link, encode_link
from riskflow.core.alerts import Alert
from riskflow.core.deadletter import dead_letter
from riskflow.core.schema import DEFAULT_MAX_BYTES, DEFAULT_MAX_FUTURE_SECONDS, Event, InvalidEvent, parse_event


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
    #: messages skipped because their entity's state already held them (its recorded offset for
    #: their lane is at or above theirs): read again after a crash or a rebalance
    already_applied: int = 0
    #: events that ran too far ahead of their partition's time (``Lane``), for the same ledger
    ahead: list[LateRecord] = field(default_factory=list)
    #: (entity kind, score) of every model score computed (the peer-group model's weeks): the
    #: worker's score and drift metrics (``detectors.base.MODEL_SCORES``)
    model_scores: list[tuple[str, float]] = field(default_factory=list)


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
    the messages an input message produces are delivered in-process right after it,
    until none are left. Either way a push waits in its dependent's state until the
    dependent's partition time passes its ``at`` (:meth:`_apply_link`), so where it lands
    among the dependent's events depends on event times, not on when it arrived.
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
        #: per entity: its state object, encoded copy and what was applied since (see _Hist)
        self._hist: dict[str, _Hist] = {}
        self._hist_key: tuple[Any, ...] = ()

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
            lane.heap.extend((p.at, st.entity_id) for p in st.pushes)
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

        A message whose processing raises (any exception but :class:`InvalidEvent`, in
        parsing, a detector, the risk scorer, a contagion link, a timed advance) is
        dead-lettered as ``processing_error``, naming the exception and the step, and the
        batch goes on: the entity's state is put back as it was before that message (the
        states are mutated in place, so each entity touched has an encoded copy, made at a
        first touch in a batch and kept across batches while it holds, and a journal of
        what was applied to it since, applied again over the copy), and what the message
        produced is dropped. Should anything escape
        that (a bug of the pipeline itself), every state and lane it touched is put back as
        it was before the batch and the exception propagates: the batch can be processed
        again (the live worker then retries it one message at a time).
        """
        now = time.time() if now is None else now
        res = BatchResult()
        self._check_history()
        undo = _Undo({name: (lane.watermark, dict(lane.ahead)) for name, lane in self._lanes.items()})
        scores = MODEL_SCORES.set(res.model_scores)
        try:
            self._process(messages, get_state, now, res, undo)
        except BaseException as exc:
            self._rollback(undo, exc)
            raise
        finally:
            MODEL_SCORES.reset(scores)
        return res

    def _check_history(self) -> None:
        """The entities' copies and journals hold only while the detectors that made them do
        (same engine, detectors and models) and stay bounded: else they start afresh."""
        engine = self.engine
        dets = engine.detectors
        key = (engine, *dets, *[getattr(d, "model", None) for d in dets])
        old = self._hist_key
        if (
            len(old) != len(key)
            or len(self._hist) > _HIST_ENTITIES
            or any(a is not b for a, b in zip(old, key, strict=True))
        ):
            self._hist = {}
            self._hist_key = key

    def _touch(self, eid: str, state: EntityState | None, undo: _Undo) -> _Hist:
        """``eid`` first touched in this batch (or again after a failure): its history, with a
        new encoded copy unless the one kept is of this very object and its journal is short."""
        t = undo.touched.get(eid)
        if t is not None:  # touched before in this batch, put back since: the same content
            t[0].obj = state
            return t[0]
        h = self._hist.get(eid)
        if h is None or h.obj is not state or len(h.entries) >= _HIST_ENTRIES:
            h = self._hist[eid] = _Hist(state, encode_state(state) if state is not None else _NEW)
        undo.touched[eid] = (h, len(h.entries))
        return h

    def _process(
        self,
        messages: Sequence[Record],
        get_state: Callable[[str], EntityState | None],
        now: float,
        res: BatchResult,
        undo: _Undo,
    ) -> None:
        states = res.states
        engine = self.engine
        links_topic = self.links_topic
        max_bytes, max_future = self.max_bytes, self.max_future_seconds
        alerts, counted, dead_letters = res.alerts, res.counted, res.dead_letters
        lane_of = self._lane_of
        touched = undo.touched
        for msg in messages:
            if links_topic is None and res.links:
                self._deliver(res, get_state, undo)
            # attributes, not unpacking: live, these are aiokafka records (RawMessage is their shape)
            value, topic, partition, offset, key = msg.value, msg.topic, msg.partition, msg.offset, msg.key
            named = lane_of.get((topic, partition))
            if named is None:
                named = self._lane(topic, partition)
            name, lane = named
            if topic == links_topic and links_topic is not None:
                try:
                    link = decode_link(value)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    dead_letters.append(dead_letter(value, "malformed_json", str(exc), topic, partition, offset, key))
                    continue
                except Exception as exc:
                    dead_letters.append(_failed(value, topic, partition, offset, key, exc, "link decoding"))
                    continue
                self._link(link, res, get_state, partition, undo, msg, name)
                continue
            try:
                event = parse_event(value, max_bytes=max_bytes, max_future_seconds=max_future, now=now)
            except InvalidEvent as exc:
                dead_letters.append(dead_letter(value, exc.reason, exc.detail, topic, partition, offset, key))
                continue
            except Exception as exc:
                dead_letters.append(_failed(value, topic, partition, offset, key, exc, "parsing"))
                continue
            eid = event.entity_id
            held = states.get(eid)
            try:
                if held is not None:
                    state: EntityState | None = held[0]
                else:
                    state = get_state(eid)
                if state is not None:
                    last = state.offsets.get(name)
                    if last is not None and last >= offset:  # read again (crash, rebalance): in the state
                        res.already_applied += 1
                        continue
                    due_before = state.due
                else:
                    due_before = 0.0
                hist = self._touch(eid, state, undo) if held is None else touched[eid][0]
                if state is not None and state.pushes and state.pushes[0].at < event.ts:
                    # contagion that reached this entity before this event's time lands first
                    self._release(eid, state, event.ts, hist, res, partition, undo)
                out = engine.process(state, event)
            except Exception as exc:
                self._restore(eid, undo, states)
                dead_letters.append(_failed(value, topic, partition, offset, key, exc, "engine"))
                continue
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
            st.lane = name
            st.offsets[name] = offset
            hist.obj = st
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
            if st.due and st.due != due_before:
                heapq.heappush(lane.heap, (st.due, eid))
            trusted = True
            if ts > lane.watermark:
                trusted = lane.observe(ts, eid, self.max_skew)
            elif lane.ahead:
                lane.ahead = {}  # an event in time ends a run of events ahead
            st.lane_watermark = lane.watermark
            hist.entries.append((_EVENT, event, name, offset, st.lane_watermark))
            if not trusted:
                self._ran_ahead(lane, event, st, partition, states, res, undo, msg)
            heap = lane.heap
            if heap and heap[0][0] < lane.watermark:
                self._advance(lane, partition, states, get_state, res, undo, msg)
        if links_topic is None and res.links:
            self._deliver(res, get_state, undo)

    def _deliver(self, res: BatchResult, get_state: Callable[[str], EntityState | None], undo: _Undo) -> None:
        """Offline (no links topic): the links the last message made, and those they make, until
        none are left, before the next message -- so every push reaches its dependent in time."""
        states = res.states
        while res.links:
            pending, res.links = res.links, []
            for link in pending:
                held = states.get(link.to)
                self._link(link, res, get_state, held[1] if held is not None else 0, undo, None, "")

    def _ran_ahead(
        self,
        lane: Lane,
        event: Event,
        st: EntityState,
        partition: int,
        states: dict[str, tuple[EntityState, int]],
        res: BatchResult,
        undo: _Undo,
        msg: Record,
    ) -> None:
        """An event too far ahead of its partition's time to move it: ledgered, and only its
        own entity's overdue deadlines fire (its clock is trusted for itself, not for others).
        A failure of that advance is contained as in :meth:`_advance`."""
        eid = event.entity_id
        try:
            ahead = _lateness.ahead_record(event, lane.watermark, self.max_skew)
            out = self.engine.advance(st, event.ts) if st.due and st.due < event.ts else None
        except Exception as exc:
            self._restore(eid, undo, states)
            res.dead_letters.append(
                _failed(msg.value, msg.topic, msg.partition, msg.offset, msg.key, exc, "timed advance", eid)
            )
            return
        res.ahead.append(ahead)
        if out is None:
            return
        undo.touched[eid][0].entries.append((_ADVANCE, event.ts, "", 0, 0.0))
        states[eid] = (out.state, partition)
        res.alerts.extend(out.alerts)
        if out.links:
            res.links.extend(out.links)
        if out.state.due:
            heapq.heappush(lane.heap, (out.state.due, eid))

    def _advance(
        self,
        lane: Lane,
        partition: int,
        states: dict[str, tuple[EntityState, int]],
        get_state: Callable[[str], EntityState | None],
        res: BatchResult,
        undo: _Undo,
        msg: Record,
    ) -> None:
        """Fire the timed findings overdue on ``lane``. One entity's failure does not stop the
        others': it is put back as it was before this advance (not indexed again: its deadline
        stays pending in its state, retried on its next change of deadline or after a restart),
        and ``msg``, whose event moved the watermark, is dead-lettered with what happened."""
        heap, wm = lane.heap, lane.watermark
        while heap and heap[0][0] < wm:
            due, eid = heapq.heappop(heap)
            undo.popped.append((lane, due, eid))
            held = states.get(eid)
            try:
                if held is not None:
                    st = held[0]
                    hist = undo.touched[eid][0]
                else:
                    got = get_state(eid)
                    if got is None or (got.due != due and not (got.pushes and got.pushes[0].at < wm)):
                        continue
                    st = got
                    hist = self._touch(eid, st, undo)
                if st.pushes and st.pushes[0].at < wm:
                    self._release(eid, st, wm, hist, res, partition, undo)
                if st.due != due:
                    continue  # stale entry: the entity's deadline moved since it was indexed
                out = self.engine.advance(st, wm)
            except Exception as exc:
                self._restore(eid, undo, states)
                res.dead_letters.append(
                    _failed(msg.value, msg.topic, msg.partition, msg.offset, msg.key, exc, "timed advance", eid)
                )
                continue
            hist.entries.append((_ADVANCE, wm, "", 0, 0.0))
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
        undo: _Undo,
        msg: Record | None,
        name: str,
    ) -> None:
        """A contagion message for ``link.to``: from the links topic (``msg``, on lane ``name``:
        skipped when the entity's state already holds it) or, offline, made by this batch."""
        scorer = self.engine.risk
        if scorer is None:
            return
        eid = link.to
        states = res.states
        held = states.get(eid)
        try:
            if held is not None:
                state: EntityState | None = held[0]
            else:
                state = get_state(eid)
            if msg is not None and state is not None:
                last = state.offsets.get(name)
                if last is not None and last >= msg.offset:
                    res.already_applied += 1
                    return
            hist = self._touch(eid, state, undo) if held is None else undo.touched[eid][0]
            if state is None:
                state = EntityState(entity_id=eid)
            lane = self._lanes.get(state.lane) if state.lane else None
            wm = lane.watermark if lane is not None else state.lane_watermark
            alerts, links, waits = self._apply_link(state, link, wm)
        except Exception as exc:
            self._restore(eid, undo, states)
            if msg is not None:
                value, topic, offset, key = msg.value, msg.topic, msg.offset, msg.key
            else:  # made by this batch (offline): the message as it would travel
                value, topic, offset, key = encode_link(link), "links (in process)", -1, eid.encode()
            res.dead_letters.append(_failed(value, topic, partition, offset, key, exc, "contagion link"))
            return
        offset = -1
        if msg is not None:
            offset = state.offsets[name] = msg.offset
        hist.entries.append((_LINK, link, name, offset, wm))
        hist.obj = state
        res.alerts.extend(alerts)
        res.links.extend(links)
        states[eid] = (state, partition)
        if waits:
            if lane is None:  # a lane this processor has not seen since its start: as stored
                lane = self._lanes[state.lane] = Lane(state.lane_watermark)
            heapq.heappush(lane.heap, (link.at, eid))

    def _apply_link(
        self, state: EntityState, link: LinkMessage, wm: float
    ) -> tuple[list[Alert], list[LinkMessage], bool]:
        """Apply a links-topic message to its entity, whose lane's watermark is ``wm``; the third
        value is True when a push was kept pending (see :meth:`_release`).

        A push waits in the state while the entity's own time and its lane's are at or before
        its ``at``: it then lands, in :meth:`_release`, right before the entity's first own event
        later than ``at`` or when the lane passes ``at``, whichever comes first -- a place fixed
        by event times alone, not by when the push arrived. A push arriving after that (its
        source's partition lagging more than ``contagion_delay_hours`` behind), or for an
        entity with no events of its own, lands at once."""
        scorer = self.engine.risk
        assert scorer is not None
        try:
            if link.kind == "push":  # contagion feeds the dependent's shown index and level
                if state.lane and link.at >= wm and link.at >= state.watermark:
                    kept, out = _contagion.hold(state.pushes, link, _PENDING_PUSHES, scorer.config)
                    if out is None:
                        return [], [], kept
                    link = out  # the bound: the earliest pending push lands now
                return scorer.on_push(state, link, self.engine.clock), [], False
            return [], scorer.on_link(state, link), False
        except Exception as exc:
            raise StepFailed("contagion", exc) from exc

    def _release(
        self, eid: str, st: EntityState, upto: float, hist: _Hist, res: BatchResult, partition: int, undo: _Undo
    ) -> None:
        """Land ``st``'s pending pushes due before event time ``upto``, in order. One that raises
        is dead-lettered and the state put back as it was before it; the others land."""
        hist.entries.append((_RELEASE, upto, "", 0, 0.0))
        hist.obj = st
        res.states[eid] = (st, partition)
        for push in _contagion.due(st.pushes, upto):
            try:
                alerts = self._land(st, push)
            except Exception as exc:
                self._restore(eid, undo, res.states)
                value = encode_link(push)
                res.dead_letters.append(
                    _failed(value, "links (pending)", partition, -1, eid.encode(), exc, "contagion link")
                )
                continue
            hist.entries.append((_LAND, push, "", 0, 0.0))
            res.alerts.extend(alerts)

    def _land(self, st: EntityState, push: LinkMessage) -> list[Alert]:
        scorer = self.engine.risk
        assert scorer is not None
        try:
            return scorer.on_push(st, push, self.engine.clock)
        except Exception as exc:
            raise StepFailed("contagion", exc) from exc

    def _restore(self, eid: str, undo: _Undo, states: dict[str, tuple[EntityState, int]]) -> None:
        """Put ``eid``'s state back as it was before the message that failed: its encoded copy,
        then what was applied to it since (its journal), applied again."""
        t = undo.touched.get(eid)
        if t is None:
            return  # not touched yet (its stored state could not be read): nothing changed
        h = t[0]
        held = states.get(eid)
        obj = held[0] if held is not None else h.obj
        if obj is None:
            return  # a new entity whose first message failed: no state was made
        self._rebuild(eid, obj, h)
        if not h.entries and not h.base:
            states.pop(eid, None)
            h.obj = None

    def _rebuild(self, eid: str, obj: EntityState, h: _Hist) -> None:
        _copy_into(obj, decode_state(h.base) if h.base else EntityState(entity_id=eid))
        for entry in h.entries:
            self._reapply(obj, entry)

    def _reapply(self, state: EntityState, entry: _Entry) -> None:
        """Apply one journal entry again (the same calls as the first time; outputs dropped)."""
        kind, item, name, offset, lane_watermark = entry
        if kind == _EVENT:
            self.engine.process(state, item)
            state.lane = name
            state.offsets[name] = offset
            state.lane_watermark = lane_watermark
        elif kind == _ADVANCE:
            self.engine.advance(state, item)
        elif kind == _RELEASE:
            _contagion.due(state.pushes, item)
        elif kind == _LAND:
            self._land(state, item)
        else:
            self._apply_link(state, item, lane_watermark)
            if offset >= 0:
                state.offsets[name] = offset

    def _rollback(self, undo: _Undo, exc: BaseException) -> None:
        """The batch failed as a whole: every state and lane it touched back to the batch start.
        Should that fail too, :class:`RollbackFailed` says the states cannot be trusted."""
        try:
            for eid, (h, mark) in undo.touched.items():
                del h.entries[mark:]
                if h.obj is None:
                    continue
                if mark == 0 and not h.base:  # made in this batch: dropped with its result
                    h.obj = None
                    continue
                self._rebuild(eid, h.obj, h)
        except BaseException as err:
            self._hist = {}
            raise RollbackFailed(f"a failed batch could not be undone ({err!r})") from exc
        for name, lane in self._lanes.items():
            lane.watermark, ahead = undo.marks.get(name, (0.0, {}))
            lane.ahead = dict(ahead)
        for lane, due, eid in undo.popped:
            heapq.heappush(lane.heap, (due, eid))


class RollbackFailed(Exception):
    """A batch failed as a whole and the entity states it touched could not be put back: they
    (e.g. a worker's cached states) cannot be trusted and must be read again from storage."""


#: The dead-letter reason of a message whose processing raised (a bug in a detector, the risk
#: scorer, ...; docs/events.md "Rejections (dead letters)"). Not one of the schema's reasons: the message may be valid.
PROCESSING_ERROR = "processing_error"
_NEW = b""  # the copy of an entity that had no state
_EVENT, _ADVANCE, _LINK, _RELEASE, _LAND = 0, 1, 2, 3, 4
#: (kind, the event / watermark / link / time before which pending pushes came out / a pending push
#: that landed, lane name, offset, lane watermark after an event or when a link came): one thing
#: applied to an entity
_Entry = tuple[int, Any, str, int, float]
#: Bounds of the histories kept across batches: an entity's copy is encoded again once its
#: journal holds this many entries (a parsed event is ~0.7 KB in memory), and all are dropped
#: once this many entities have one: at most ~2,048 x (16 x 0.7 KB + a decoded state, ~5 KB)
#: ~ 33 MB. A busy entity is thus encoded about once per 16 of its events, not once per batch
#: it appears in; a worker with more entities active at once encodes at first touch per batch.
_HIST_ENTRIES = 16
_HIST_ENTITIES = 2048
#: Contagion pushes an entity holds pending at most (``EntityState.pushes``): beyond, the earliest
#: lands at once. Each source's pushes are its level transitions within ``contagion_delay_hours``.
_PENDING_PUSHES = 16


class _Hist:
    """One entity's undo history: the state object it applies to, an encoded copy of it (b"":
    no state) and the journal of what was applied to it since, in order."""

    __slots__ = ("base", "entries", "obj")

    def __init__(self, obj: EntityState | None, base: bytes) -> None:
        self.obj = obj
        self.base = base
        self.entries: list[_Entry] = []


class _Undo:
    """What one :meth:`BatchProcessor.process` call needs to undo its work: per entity touched,
    its history and the journal's length at the batch start; the lanes' watermarks at the
    batch start and the deadline entries it popped."""

    __slots__ = ("marks", "popped", "touched")

    def __init__(self, marks: dict[str, tuple[float, dict[str, float]]]) -> None:
        self.marks = marks
        self.touched: dict[str, tuple[_Hist, int]] = {}
        self.popped: list[tuple[Lane, float, str]] = []


_FIELDS = EntityState.__struct_fields__


def _copy_into(obj: EntityState, src: EntityState) -> None:
    """Make ``obj`` hold ``src``'s fields: restored in place, since the caller (the live
    worker's state cache) may hold ``obj`` itself."""
    for f in _FIELDS:
        setattr(obj, f, getattr(src, f))


def _failed(
    value: bytes,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    exc: BaseException,
    where: str,
    entity: str = "",
) -> dict[str, Any]:
    """The dead letter of a message whose processing raised: the exception's type and text and
    the step it came from (the detector, when the engine knew it)."""
    step, err = (exc.step, exc.error) if isinstance(exc, StepFailed) else (where, exc)
    try:
        text = str(err)
    except Exception:  # an exception that cannot even say what it is
        text = "(its text could not be read)"
    if len(text) > 300:
        text = text[:300] + "..."
    detail = f"{type(err).__name__} in {step}: {text}"
    if entity:
        detail = f"{where} of {entity}: {detail}"
    return dead_letter(value, PROCESSING_ERROR, detail, topic, partition, offset, key)
