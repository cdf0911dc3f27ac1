"""Response bodies in Agora's shapes: errors, and the per-mode ``serverResponse``
(docs/providers/agora.md §3, §5).

Pure functions of a task and a time, so the REST layer stays a sequence of checks.
"""

from __future__ import annotations

from typing import Any

from .model import Phase, Playlist, Task


def error(code: int, reason: str, **ids: str) -> dict[str, Any]:
    """``{cname, uid, resourceId, sid, code, reason}`` with whichever ids are known."""
    return {**{k: v for k, v in ids.items() if v}, "code": code, "reason": reason}


def not_found_short(cname: str, uid: str) -> dict[str, Any]:
    return {"cname": cname, "code": 404, "reason": "failed to find worker", "uid": uid}


def not_found_long(
    command: str, cname: str, uid: str, resource_id: str, sid: str
) -> dict[str, Any]:
    """The older body seen in the wild (AgoraIO/API-Examples#373)."""
    return {
        "cname": cname,
        "code": 404,
        "resourceId": resource_id,
        "serverResponse": {
            "command": command,
            "payload": {"message": "failed to find worker"},
            "subscribeModeBitmask": 1,
            "vid": "1209",
        },
        "sid": sid,
        "uid": uid,
    }


def file_entry(playlist: Playlist, name: str) -> dict[str, Any]:
    """One JSON ``fileList`` element of query, stop and ``uploaded`` (individual and mix)."""
    return {
        "fileName": name,
        "trackType": playlist.track,
        "uid": playlist.uid,
        "mixedAllUser": playlist.mixed,
        "isPlayable": True,
        "sliceStartTime": playlist.start_ms,
    }


def _web_state(task: Task) -> str:
    if task.phase in (Phase.EXITING, Phase.EXITED):
        return "exit"
    return "inProgress" if task.web_loaded else "init"


def _web_services(task: Task, now: float, *, final: bool) -> list[dict[str, Any]]:
    files = [
        {"filename": name, "sliceStartTime": p.start_ms}
        for p, name in task.file_entries(now, final=final)
    ]
    state = _web_state(task)
    services: list[dict[str, Any]] = [
        {
            "serviceName": "web_recorder_service",
            "payload": {"fileList": files, "onhold": task.onhold, "state": state},
        }
    ]
    if task.rtmp_outputs:
        status = "onhold" if task.onhold else ("publishing" if task.web_loaded else "connecting")
        if state == "exit":
            status = "disconnected"
        outputs = [{"rtmpUrl": url, "status": status} for url in task.rtmp_outputs]
        services.append(
            {"serviceName": "rtmp_publish_service", "payload": {"outputs": outputs, "state": state}}
        )
    return services


def _file_list(task: Task, now: float, *, final: bool) -> dict[str, Any]:
    entries = task.file_entries(now, final=final)
    if task.mode == "mix" and "mp4" not in task.spec.av_file_types:
        latest = entries[-1][1] if entries else ""
        return {"fileListMode": "string", "fileList": latest}
    return {"fileListMode": "json", "fileList": [file_entry(p, n) for p, n in entries]}


def query_response(task: Task, now: float) -> dict[str, Any]:
    """``serverResponse`` of query for the task's mode and configuration."""
    if task.mode == "web":
        return {
            "status": task.status,
            "extensionServiceState": _web_services(task, now, final=False),
        }
    body: dict[str, Any] = {"status": task.status}
    if task.spec.snapshot_interval is None:
        body.update(_file_list(task, now, final=False))
    body["sliceStartTime"] = task.first_slice_ms()
    return body


def stop_response(task: Task, now: float, uploading_status: str) -> dict[str, Any]:
    """``serverResponse`` of a successful stop."""
    if task.mode == "web":
        upload = {"serviceName": "upload_service", "payload": {"uploadingStatus": uploading_status}}
        return {"extensionServiceState": [upload, *_web_services(task, now, final=True)]}
    if task.spec.snapshot_interval is not None:
        return {"uploadingStatus": uploading_status}
    return {**_file_list(task, now, final=True), "uploadingStatus": uploading_status}
