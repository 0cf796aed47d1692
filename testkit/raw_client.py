"""A client for Gradio's queue that can send what gradio_client cannot.

RawSession speaks the protocol a browser tab speaks (POST queue/join, then the queue/data
event stream) with Python's permissive JSON, as curl or any other client could: NaN,
infinities and lone surrogates can only arrive that way (gradio_client's JSON encoder refuses
them). It also carries cookies, so a proxy that keeps a client on one worker by cookie keeps it.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass

import httpx


@dataclass
class Reply:
    ok: bool
    data: object = None  # the endpoint's JSON result (for /reset: its second output)
    error: str | None = None
    outputs: list | None = None  # every output of the event, in order


class RawSession:
    """One session on the server's queue: POST /gradio_api/queue/join, then read the event
    stream /gradio_api/queue/data until this event completes. The JSON body is written by
    json.dumps as is: NaN, Infinity and \\ud800 escapes reach the server."""

    def __init__(self, url: str, timeout: float = 120.0, heartbeat: bool = False, config=None):
        self.url = url.rstrip("/")
        self.session_hash = uuid.uuid4().hex
        self.http = httpx.Client(timeout=timeout)
        config = config or self.http.get(f"{self.url}/config").json()
        self.deps = {d["api_name"]: d for d in config["dependencies"] if d.get("api_name")}
        self.state_ids = {c["id"] for c in config["components"] if c.get("type") == "state"}
        # As a browser tab does, a heartbeat tells the server the session is alive; when it
        # closes, the server frees the session. It starts after the first call, on the same
        # client: the same cookies, so behind a proxy that keeps a client on one worker by
        # cookie it reaches the worker that holds the session (started before any cookie is
        # set, it could be sent to another worker than the first call).
        self._heartbeat_wanted = heartbeat
        self._beat: threading.Thread | None = None

    def _start_heartbeat(self):
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)
        self._beat.start()

    def _heartbeat(self):
        try:
            with self.http.stream("GET", f"{self.url}/gradio_api/heartbeat/{self.session_hash}",
                                  timeout=httpx.Timeout(10, read=None)) as r:
                for _ in r.iter_bytes():
                    pass
        except Exception:  # closed by close(), or the server went away: either ends the beat
            pass

    def close(self):
        self.http.close()  # also ends the heartbeat's stream

    def call(self, api_name: str, *args, joined: threading.Event | None = None) -> Reply:
        dep = self.deps[api_name]
        values = iter(args)
        # gr.State inputs are held by the server: clients send null in their place.
        data = [None if i in self.state_ids else next(values, None) for i in dep["inputs"]]
        return self.join(dep["id"], data, joined=joined)

    def join(self, fn_index: int, data: list, event_data=None,
             joined: threading.Event | None = None) -> Reply:
        """event_data: what a page's custom event carries (its trigger's data). joined, if
        given, is set once the server has answered the join: the event is queued or refused."""
        body = json.dumps({"data": data, "fn_index": fn_index, "session_hash": self.session_hash,
                           "event_data": event_data, "trigger_id": None})
        try:
            r = self.http.post(f"{self.url}/gradio_api/queue/join", content=body,
                               headers={"content-type": "application/json"})
        finally:
            if joined is not None:
                joined.set()
        if r.status_code != 200:
            return Reply(False, error=f"HTTP {r.status_code}: {r.text[:500]}")
        event = r.json()["event_id"]
        if self._heartbeat_wanted and self._beat is None:
            self._start_heartbeat()
        with self.http.stream("GET", f"{self.url}/gradio_api/queue/data",
                              params={"session_hash": self.session_hash}) as stream:
            for line in sse_lines(stream):
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("event_id") != event:
                    continue
                if msg.get("msg") == "process_completed":
                    out = msg.get("output") or {}
                    if not msg.get("success"):
                        return Reply(False, error=out.get("error"))
                    return Reply(True, data=(out.get("data") or [None])[-1], outputs=out.get("data"))
                if msg.get("msg") == "unexpected_error":
                    return Reply(False, error=msg.get("message"))
        return Reply(False, error=None)  # the stream ended without completing this event


def sse_lines(response):
    """An event stream's lines. Only \n ends one: httpx's iter_lines also splits at U+0085 and
    U+2028, which a prompt may contain and the server sends unescaped inside the JSON."""
    buffer = b""
    for chunk in response.iter_bytes():
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            yield line.decode("utf-8").rstrip("\r")
    if buffer:
        yield buffer.decode("utf-8")


def strict_json(value) -> bool:
    """Whether gradio_client (httpx: allow_nan=False, UTF-8) can send the value."""
    try:
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
        return True
    except (ValueError, UnicodeEncodeError):
        return False
