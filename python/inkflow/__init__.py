"""Python client for inkflow services and streams.

- :class:`Study` drives a ``bkb`` tuning service (a graph with a ``router``
  source, docs/bkb.md): ``ask`` for a trial, evaluate it, ``tell`` its value
  (or ``fail`` it), query ``best`` and ``trials``.
- :func:`send` / :func:`recv` push records into a graph's ``zmq`` source and
  read them from a ``zmq`` sink, with inkflow's end-of-stream exchange
  (docs/wire-format.md).

Pure Python on Debian's python3-zmq and python3-msgpack. The wire format is
docs/wire-format.md: one msgpack map per message, replies ``{"error": ...}``
on refusal, which this module raises as :class:`ServiceError`.
"""
from __future__ import annotations

import math
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Union

import msgpack
import zmq

__all__ = [
    "InkflowError",
    "ServiceError",
    "Timeout",
    "Trial",
    "Best",
    "Study",
    "request",
    "send",
    "recv",
]
__version__ = "0.1.0"

EOS_TAG = b"INKFLOW-EOS"
EOS_ACK_TAG = b"INKFLOW-EOS-ACK"
EOS_HELLO_TAG = b"INKFLOW-EOS-HELLO"
EOS_PROPERTY = "X-Inkflow-Eos"  # docs/wire-format.md#end-of-stream


class InkflowError(Exception):
    """Base class of this module's errors."""


class ServiceError(InkflowError):
    """The service refused a request: ``reply`` is its ``{"error": ...}`` map,
    ``request`` what was sent."""

    def __init__(self, message: str, request: Mapping[str, Any], reply: Mapping[str, Any]):
        super().__init__(message)
        self.request = dict(request)
        self.reply = dict(reply)


class Timeout(InkflowError, TimeoutError):
    """No reply (or no end-of-stream acknowledgement) within the timeout."""


def _pack(obj: Mapping[str, Any]) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


_ctx_lock = threading.Lock()
_ctx: Optional[zmq.Context] = None
_ctx_pid = 0


def _context() -> zmq.Context:
    """One ZeroMQ context per process (re-created after a fork)."""
    global _ctx, _ctx_pid
    with _ctx_lock:
        if _ctx is None or _ctx_pid != os.getpid():
            _ctx = zmq.Context()
            _ctx_pid = os.getpid()
        return _ctx


class _Client:
    """REQ sockets, one per thread, so that one client object can be shared
    by worker threads. A socket whose request timed out is discarded (a REQ
    socket cannot send again before it has received)."""

    def __init__(self, endpoint: str, timeout: float):
        self.endpoint = endpoint
        self.timeout = timeout
        self._local = threading.local()
        self._all: List[zmq.Socket] = []
        self._lock = threading.Lock()

    def _sock(self) -> zmq.Socket:
        s = getattr(self._local, "sock", None)
        if s is None:
            s = _context().socket(zmq.REQ)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(self.endpoint)
            self._local.sock = s
            with self._lock:
                self._all.append(s)
        return s

    def _drop(self) -> None:
        s = getattr(self._local, "sock", None)
        if s is not None:
            with self._lock:
                if s in self._all:
                    self._all.remove(s)
            s.close(0)
            self._local.sock = None

    def call(self, req: Mapping[str, Any], timeout: Optional[float] = None) -> Any:
        tmo = self.timeout if timeout is None else timeout
        s = self._sock()
        try:
            s.send(_pack(req))
        except zmq.ZMQError as e:
            self._drop()
            raise InkflowError("send to %s: %s" % (self.endpoint, e)) from None
        if not s.poll(int(tmo * 1000)):
            self._drop()
            raise Timeout("no reply from %s within %.1f s to %s" % (self.endpoint, tmo, dict(req)))
        reply = _unpack(s.recv())
        if isinstance(reply, dict) and "error" in reply:
            raise ServiceError("%s: %s" % (req.get("op", "request"), reply["error"]), req, reply)
        return reply

    def close(self) -> None:
        with self._lock:
            for s in self._all:
                s.close(0)
            self._all.clear()
        self._local = threading.local()


def request(endpoint: str, req: Mapping[str, Any], timeout: float = 10.0) -> Any:
    """Send one request to a router source and return the reply (a dict, or a
    list of dicts when the replying node emits several). Raises
    :class:`ServiceError` on an error reply and :class:`Timeout`."""
    c = _Client(endpoint, timeout)
    try:
        return c.call(req)
    finally:
        c.close()


@dataclass
class Trial:
    """One asked arm. ``arm`` is its index in the service's arm set, ``x`` the
    coordinates the kernel sees, ``params`` the named parameter values when the
    service has a named search space (``arms: {space: ...}``; else ``{}``).
    ``number`` is the service's suggestion counter (``round``); ``mu``,
    ``sigma``, ``ucb`` the posterior there when it was asked."""

    arm: int
    x: List[float]
    params: Dict[str, Any] = field(default_factory=dict)
    number: int = -1
    mu: float = math.nan
    sigma: float = math.nan
    ucb: float = math.nan
    key: Optional[str] = None
    reply: Dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_reply(cls, r: Mapping[str, Any], key: Optional[str] = None) -> "Trial":
        return cls(arm=int(r["arm"]), x=list(r.get("x", [])), params=dict(r.get("params") or {}),
                   number=int(r.get("round", -1)), mu=r.get("mu", math.nan),
                   sigma=r.get("sigma", math.nan), ucb=r.get("ucb", math.nan), key=key,
                   reply=dict(r))


@dataclass
class Best:
    """The reply of ``best``: the best observed arm (``arm``, ``x``,
    ``params``, ``value`` = its best told reward, ``mu``/``sigma`` the
    posterior there) and the arm with the highest posterior mean
    (``mean_arm``, ``mean_x``, ``mean_params``, ``mean_mu``,
    ``mean_sigma``)."""

    arm: int
    x: List[float]
    value: float
    mu: float
    sigma: float
    params: Dict[str, Any]
    mean_arm: int
    mean_x: List[float]
    mean_mu: float
    mean_sigma: float
    mean_params: Dict[str, Any]
    told: int
    reply: Dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_reply(cls, r: Mapping[str, Any]) -> "Best":
        return cls(arm=int(r["arm"]), x=list(r["x"]), value=r["y"], mu=r["mu"], sigma=r["sigma"],
                   params=dict(r.get("params") or {}), mean_arm=int(r["mean_arm"]),
                   mean_x=list(r["mean_x"]), mean_mu=r["mean_mu"], mean_sigma=r["mean_sigma"],
                   mean_params=dict(r.get("mean_params") or {}), told=int(r.get("told", 0)),
                   reply=dict(r))


TrialRef = Union[Trial, int, Mapping[str, Any]]


class Study:
    """A tuning study on a ``bkb`` service (docs/bkb.md, "As a service").

    ``endpoint`` is the graph's ``router`` source (``tcp://127.0.0.1:5560``);
    ``key`` names the study when the operator has ``key_by`` (one state per
    key; the first ``ask`` creates it). ``timeout`` bounds every request, in
    seconds. One object can be shared by threads (each thread gets its own
    socket); requests are synchronous.

    The service maximises: tell it the value to maximise (negate a loss).
    """

    def __init__(self, endpoint: str, key: Optional[str] = None, timeout: float = 10.0):
        self.endpoint = endpoint
        self.key = key
        self._c = _Client(endpoint, timeout)

    def __enter__(self) -> "Study":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close this study's sockets (the service keeps its state)."""
        self._c.close()

    def call(self, op: str, timeout: Optional[float] = None, **fields: Any) -> Any:
        """Send ``{"op": op, **fields}`` (plus ``key``) and return the reply."""
        req: Dict[str, Any] = {"op": op}
        if self.key is not None:
            req["key"] = self.key
        req.update({k: v for k, v in fields.items() if v is not None})
        return self._c.call(req, timeout)

    def ask(self, n: Optional[int] = None) -> Union[Trial, List[Trial]]:
        """The next arm to evaluate (a :class:`Trial`); it stays pending, and
        is handed to no one else, until :meth:`tell` or :meth:`fail` (or the
        service's ``pending_timeout``). With ``n``: a list of n trials at
        once (``n=0``: as many as the BBKB batch rule allows)."""
        if n is None:
            return Trial.from_reply(self.call("ask"), self.key)
        r = self.call("ask", n=n)
        params = r.get("params") or [{} for _ in r["arms"]]
        return [Trial(arm=int(a), x=list(x), params=dict(p), number=int(r["round"]) + i, mu=m,
                      sigma=s, ucb=u, key=self.key)
                for i, (a, x, p, m, s, u) in enumerate(zip(r["arms"], r["xs"], params, r["mu"],
                                                            r["sigma"], r["ucb"]))]

    @staticmethod
    def _ref(trial: TrialRef) -> Dict[str, Any]:
        if isinstance(trial, Trial):
            return {"arm": trial.arm}
        if isinstance(trial, bool):
            raise TypeError("a trial is a Trial, an arm index or a params mapping")
        if isinstance(trial, int):
            return {"arm": trial}
        if isinstance(trial, Mapping):
            return {"params": dict(trial)}
        raise TypeError("a trial is a Trial, an arm index or a params mapping, not %r"
                        % type(trial).__name__)

    def tell(self, trial: TrialRef, value: float) -> Dict[str, Any]:
        """Report the value (reward, maximised) of a pending trial: a
        :class:`Trial`, its arm index, or its params mapping."""
        v = float(value)
        if not math.isfinite(v):
            raise ValueError("tell: value %r is not finite (use fail() for a failed trial)" % value)
        return self.call("tell", y=v, **self._ref(trial))

    def fail(self, trial: TrialRef) -> Dict[str, Any]:
        """Give a pending trial back without a value (it crashed, was pruned,
        or will not be evaluated): the arm is free again and nothing is
        learnt from it."""
        return self.call("fail", **self._ref(trial))

    def best(self) -> Best:
        """The best observed arm and the arm of highest posterior mean."""
        return Best.from_reply(self.call("best"))

    def trials(self, start: int = 0, limit: Optional[int] = None,
               page: int = 256) -> List[Dict[str, Any]]:
        """The study's finished trials from index ``start`` (told, failed,
        expired; oldest first), fetched ``page`` at a time; at most ``limit``.
        Each is a dict with ``trial``, ``arm``, ``state`` and, when told,
        ``y``, plus ``x`` / ``params``. Pending trials are not included
        (``pending()`` lists them)."""
        out: List[Dict[str, Any]] = []
        pos = start
        while limit is None or len(out) < limit:
            n = page if limit is None else min(page, limit - len(out))
            r = self.call("trials", start=pos, limit=n)
            rows = r.get("trials", [])
            out.extend(rows)
            pos = r.get("next", pos + len(rows))
            if not rows or pos >= r.get("total", 0):
                break
        return out

    def pending(self) -> List[Dict[str, Any]]:
        """The trials asked and not yet told, failed or expired."""
        return list(self.call("pending", start=0, limit=256).get("pending", []))

    def predict(self, trial: TrialRef) -> Dict[str, Any]:
        """Posterior ``mu``, ``sigma``, ``ucb`` at an arm (read-only)."""
        return self.call("predict", **self._ref(trial))


def _eos_ack_endpoint(endpoint: str) -> str:
    if endpoint.startswith("ipc://"):
        return "ipc:///tmp/inkflow-eos-%x.sock" % random.getrandbits(60)
    host = endpoint.split("://", 1)[-1]
    loop = host.startswith("127.") or host.startswith("localhost")
    return "tcp://127.0.0.1:*" if loop else "tcp://0.0.0.0:*"


def send(endpoint: str, records: Iterable[Mapping[str, Any]], bind: bool = False,
         timeout: float = 30.0) -> int:
    """Push records (maps: ``x``, ``y``, ``key``, ... as in
    docs/wire-format.md) to a graph's ``zmq`` pull source, then run the
    end-of-stream exchange so that none of them is lost when the socket
    closes (libzmq#4660): returns how many records the receiver acknowledges.
    Raises :class:`Timeout` when the acknowledgement does not come within
    ``timeout`` seconds (the tail may then be lost)."""
    ctx = _context()
    s = ctx.socket(zmq.PUSH)
    s.setsockopt(zmq.LINGER, 1000)
    s.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
    (s.bind if bind else s.connect)(endpoint)
    ack = ctx.socket(zmq.PULL)
    ack.setsockopt(zmq.LINGER, 0)
    try:
        sent = 0
        for rec in records:
            try:
                s.send(_pack(rec))
            except zmq.Again:
                raise Timeout("send to %s: blocked for %.1f s" % (endpoint, timeout)) from None
            sent += 1
        ack.bind(_eos_ack_endpoint(endpoint))
        told = ack.getsockopt(zmq.LAST_ENDPOINT).decode()
        if told.startswith("tcp://0.0.0.0:"):
            told = "tcp://@peer:" + told.rsplit(":", 1)[1]
        eid = random.getrandbits(63)
        marker = _pack({"id": eid, "sent": sent, "ack": told})
        deadline = time.monotonic() + timeout
        next_send = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_send:
                try:
                    s.send_multipart([EOS_TAG, marker])
                except zmq.Again:
                    break
                next_send = time.monotonic() + 0.5
            if not ack.poll(100):
                continue
            frames = ack.recv_multipart()
            if len(frames) == 2 and frames[0] == EOS_ACK_TAG:
                body = _unpack(frames[1])
                if isinstance(body, dict) and body.get("id") == eid:
                    return int(body.get("received", sent))
        raise Timeout("end of stream: no acknowledgement from %s within %.1f s; the last records"
                      " may be lost" % (endpoint, timeout))
    finally:
        ack.close(0)
        s.close()


def _eos_hello(ctx: zmq.Context, frame: zmq.Frame, greeted: set, rid: int) -> None:
    """A sender that takes part in the end-of-stream exchange names its ack
    socket in a ZMTP property; say hello there once, so that it sends this
    receiver its end-of-stream marker (docs/wire-format.md#end-of-stream)."""
    try:
        prop = frame.get(EOS_PROPERTY)
    except zmq.ZMQError:
        return
    parts = prop.split(" ", 2) if isinstance(prop, str) else []
    if len(parts) != 3 or parts[0] != "1" or parts[1] in greeted:
        return
    greeted.add(parts[1])
    ack_ep = parts[2]
    if "@peer" in ack_ep:
        ack_ep = ack_ep.replace("@peer", frame.get("Peer-Address") or "127.0.0.1")
    a = ctx.socket(zmq.PUSH)
    a.setsockopt(zmq.LINGER, 1000)
    a.connect(ack_ep)
    a.send_multipart([EOS_HELLO_TAG, _pack({"id": int(parts[1], 16), "rid": rid})])
    a.close()


def recv(endpoint: str, count: Optional[int] = None, bind: bool = False, timeout: float = 0.0,
         sub: bool = False) -> Iterator[Dict[str, Any]]:
    """Yield records (dicts) from a graph's ``zmq`` push (or pub, ``sub=True``)
    sink. Stops after ``count`` records, at an end-of-stream marker (which it
    acknowledges, as ``inkflow recv`` does), or, with ``timeout`` > 0, after
    that many seconds without a message (raising :class:`Timeout`)."""
    ctx = _context()
    s = ctx.socket(zmq.SUB if sub else zmq.PULL)
    s.setsockopt(zmq.LINGER, 0)
    if sub:
        s.setsockopt(zmq.SUBSCRIBE, b"")
    (s.bind if bind else s.connect)(endpoint)
    got = 0
    rid = random.getrandbits(63) | 1
    greeted = set()
    try:
        while count is None or got < count:
            if not s.poll(int(timeout * 1000) if timeout > 0 else None):
                raise Timeout("recv %s: nothing for %.1f s" % (endpoint, timeout))
            frames = s.recv_multipart(copy=False)
            if len(frames) == 1:
                got += 1
                if not sub:
                    _eos_hello(ctx, frames[0], greeted, rid)
                yield _unpack(frames[0].bytes)
                continue
            if frames[0].bytes == EOS_TAG and len(frames) == 2:
                body = _unpack(frames[1].bytes)
                ack_ep = body.get("ack", "") if isinstance(body, dict) else ""
                if "@peer" in ack_ep:  # tcp: the address the marker came from
                    peer = frames[1].get("Peer-Address") or "127.0.0.1"
                    ack_ep = ack_ep.replace("@peer", peer)
                if ack_ep:
                    a = ctx.socket(zmq.PUSH)
                    a.setsockopt(zmq.LINGER, 1000)
                    a.connect(ack_ep)
                    a.send_multipart([EOS_ACK_TAG, _pack({"id": body.get("id"), "received": got,
                                                          "rid": rid})])
                    a.close()
                if count is None:
                    return
    finally:
        s.close(0)
