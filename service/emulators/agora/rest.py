"""The six Cloud Recording REST operations: checks in Agora's order, then the engine.

Each method takes the decoded request and returns a :class:`Reply` (HTTP status + JSON body);
nothing here knows about HTTP transport, auth or rate limits (see ``api.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.emulators.framework.clock import Clock

from .channels import HOST, LIVE
from .config import EmulatorConfig
from .engine import RecordingEngine
from .ids import IdSource, ResourceClaim, digest_of
from .model import Phase, Task
from .responses import error, not_found_long, not_found_short, query_response, stop_response
from .validation import (
    InvalidParameter,
    parse_acquire,
    parse_ids,
    parse_layout,
    parse_start,
    parse_stop,
    parse_update,
)

MODES = ("individual", "mix", "web")
_COMMANDS = {
    "query": "Query",
    "update": "Update",
    "updateLayout": "UpdateLayout",
    "stop": "Stop",
}


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]


def _invalid(exc: InvalidParameter, **ids: str) -> Reply:
    return Reply(400, error(2, exc.reason, **ids))


class CloudRecordingApi:
    """Agora's semantics for acquire/start/query/update/updateLayout/stop."""

    def __init__(
        self, config: EmulatorConfig, clock: Clock, ids: IdSource, engine: RecordingEngine
    ) -> None:
        self._config = config
        self._clock = clock
        self._ids = ids
        self._engine = engine
        self._not_found_count = 0

    def channel_users(self, cname: str) -> Reply:
        """RTC Channel Management's user list, recorders included (Agora counts them)."""
        channel = self._engine.channels.channels.get(cname)
        members = list(channel.members.values()) if channel is not None else []
        if not members:
            return Reply(200, {"success": True, "data": {"channel_exist": False}})
        data: dict[str, Any]
        if any(p.profile == LIVE for p in members):
            audience = [p.uid for p in members if p.role != HOST]
            data = {
                "channel_exist": True,
                "mode": 2,
                "broadcasters": [p.uid for p in members if p.role == HOST],
                "audience": audience,
                "audience_total": len(audience),
            }
        else:
            users = [p.uid for p in members]
            data = {"channel_exist": True, "mode": 1, "total": len(users), "users": users}
        return Reply(200, {"success": True, "data": data})

    def _over_quota(self) -> bool:
        return self._engine.live >= self._config.max_concurrent_tasks

    def acquire(self, app_id: str, body: dict[str, Any]) -> Reply:
        try:
            req = parse_acquire(body)
        except InvalidParameter as exc:
            return _invalid(exc)
        if self._over_quota():
            return Reply(400, error(406, "vendor_over_load"))
        keys = tuple(sorted(req.start_parameter or {}))
        claim = ResourceClaim(
            app_id=app_id,
            cname=req.cname,
            uid=req.uid,
            acquired_ms=self._clock.now_ms(),
            scene=req.scene,
            expired_hour=req.expired_hour,
            region=req.region,
            start_keys=keys,
            start_digest=digest_of(req.start_parameter or {}, keys),
        )
        resource_id = self._ids.resource_id(claim)
        return Reply(200, {"cname": req.cname, "uid": req.uid, "resourceId": resource_id})

    def start(self, app_id: str, resource_id: str, mode: str, body: dict[str, Any]) -> Reply:
        try:
            cname, uid = parse_ids("Start", body)
        except InvalidParameter as exc:
            return _invalid(exc, resourceId=resource_id)
        ids = {"cname": cname, "uid": uid, "resourceId": resource_id}
        if mode not in MODES:
            return Reply(400, error(2, "Start: invalid mode value!", **ids))
        claim = self._ids.parse_resource(resource_id)
        if claim is None:
            return Reply(400, error(1001, "failed to parse resourceId", **ids))
        if (claim.app_id, claim.cname, claim.uid) != (app_id, cname, uid):
            return Reply(400, error(432, "parameter mismatch with resourceId", **ids))
        if resource_id in self._engine.by_resource:
            return Reply(201, error(7, "already started", **ids))
        age_ms = self._clock.now_ms() - claim.acquired_ms
        if age_ms > self._config.resource_ttl * 1000:
            return Reply(400, error(433, "resource expired", **ids))
        request = body.get("clientRequest")
        if not isinstance(request, dict):
            return Reply(400, error(2, "Start: clientRequest is required!", **ids))
        try:
            spec = parse_start(mode, request)
        except InvalidParameter as exc:
            return _invalid(exc, **ids)
        if (claim.scene == 1) != (mode == "web"):
            return Reply(400, error(2, "Start: scene does not match mode!", **ids))
        if claim.start_keys and digest_of(request, claim.start_keys) != claim.start_digest:
            return Reply(
                400, error(2, "Start: clientRequest does not match startParameter!", **ids)
            )
        if (cname, uid) in self._engine.by_identity:
            return Reply(400, error(53, "task conflict", **ids))
        if self._over_quota():
            return Reply(400, error(406, "vendor_over_load", **ids))
        task = self._engine.create(resource_id, cname, uid, spec, claim.expired_hour)
        return Reply(200, {**ids, "sid": task.sid})

    def _not_found(self, command: str, cname: str, uid: str, resource_id: str, sid: str) -> Reply:
        form = self._config.not_found_form
        if form == "alternate":
            form = "short" if self._not_found_count % 2 == 0 else "long"
            self._not_found_count += 1
        if form == "short":
            return Reply(404, not_found_short(cname, uid))
        return Reply(404, not_found_long(f"{command}CloudRecorder", cname, uid, resource_id, sid))

    def _lookup(
        self, endpoint: str, resource_id: str, sid: str, mode: str, body: dict[str, Any] | None
    ) -> Task | Reply:
        """The task a sid-based call addresses, or the documented error reply."""
        command = _COMMANDS[endpoint]
        cname = uid = ""
        if body is not None:
            try:
                cname, uid = parse_ids(command, body)
            except InvalidParameter as exc:
                return _invalid(exc, resourceId=resource_id, sid=sid)
        ids = {"cname": cname, "uid": uid, "resourceId": resource_id, "sid": sid}
        task = self._engine.tasks.get(sid)
        if task is None:
            return self._not_found(command, cname, uid, resource_id, sid)
        cname, uid = cname or task.cname, uid or task.uid
        ids.update(cname=cname, uid=uid)
        if task.resource_id != resource_id:
            return Reply(400, error(1003, "sid does not match resourceId", **ids))
        if body is not None and (cname, uid) != (task.cname, task.uid):
            return Reply(400, error(432, "parameter mismatch with resourceId", **ids))
        if mode != task.mode:
            return Reply(400, error(2, f"{command}: invalid mode value!", **ids))
        expired = self._clock.now() > task.resource_expires_at
        if task.phase in (Phase.EXITED, Phase.FAILOVER) or expired:
            return self._not_found(command, cname, uid, resource_id, sid)
        if task.phase is Phase.EXITING:
            if endpoint == "stop":
                return Reply(400, error(49, "invalid operation", **ids))
            if endpoint == "query":
                return Reply(500, error(501, "recording service is exiting", **ids))
            return self._not_found(command, cname, uid, resource_id, sid)
        return task

    @staticmethod
    def _task_ids(task: Task) -> dict[str, str]:
        return {
            "cname": task.cname,
            "uid": task.uid,
            "resourceId": task.resource_id,
            "sid": task.sid,
        }

    def query(self, resource_id: str, sid: str, mode: str) -> Reply:
        found = self._lookup("query", resource_id, sid, mode, None)
        if isinstance(found, Reply):
            return found
        server = query_response(found, self._clock.now())
        return Reply(200, {**self._task_ids(found), "serverResponse": server})

    def _client_request(
        self, command: str, task: Task, body: dict[str, Any]
    ) -> Reply | dict[str, Any]:
        request = body.get("clientRequest")
        if not isinstance(request, dict):
            reason = f"{command}: clientRequest is required!"
            return Reply(400, error(2, reason, **self._task_ids(task)))
        return request

    def update(self, resource_id: str, sid: str, mode: str, body: dict[str, Any]) -> Reply:
        found = self._lookup("update", resource_id, sid, mode, body)
        if isinstance(found, Reply):
            return found
        request = self._client_request("Update", found, body)
        if isinstance(request, Reply):
            return request
        try:
            change = parse_update(mode, request)
        except InvalidParameter as exc:
            return _invalid(exc, **self._task_ids(found))
        self._engine.update(found, change)
        return Reply(200, self._task_ids(found))

    def update_layout(self, resource_id: str, sid: str, mode: str, body: dict[str, Any]) -> Reply:
        """Mix mode only; each call replaces the whole layout
        (docs/providers/agora.md#4-update-and-updatelayout)."""
        found = self._lookup("updateLayout", resource_id, sid, mode, body)
        if isinstance(found, Reply):
            return found
        if mode != "mix":
            reason = "UpdateLayout: invalid mode value!"
            return Reply(400, error(2, reason, **self._task_ids(found)))
        request = self._client_request("UpdateLayout", found, body)
        if isinstance(request, Reply):
            return request
        try:
            found.layout = parse_layout(request)
        except InvalidParameter as exc:
            return _invalid(exc, **self._task_ids(found))
        return Reply(200, self._task_ids(found))

    def stop(self, resource_id: str, sid: str, mode: str, body: dict[str, Any]) -> Reply:
        found = self._lookup("stop", resource_id, sid, mode, body)
        if isinstance(found, Reply):
            return found
        try:
            async_stop = parse_stop(body)
        except InvalidParameter as exc:
            return _invalid(exc, **self._task_ids(found))
        now = self._clock.now()
        had_data = found.recorded_seconds(now) > 0
        self._engine.stop(found)
        if not had_data:
            return Reply(206, error(435, "no recorded data", **self._task_ids(found)))
        status = "unknown" if async_stop else ("backuped" if found.backuped else "uploaded")
        server = stop_response(found, now, status)
        ids = self._task_ids(found)
        reply = {"resourceId": ids["resourceId"], "sid": sid, "serverResponse": server}
        return Reply(200, {**reply, "cname": ids["cname"], "uid": ids["uid"]})
