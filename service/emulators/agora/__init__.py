"""A high-fidelity emulator of Agora Cloud Recording's REST API and notifications.

Behaves as ``docs/providers/agora.md`` documents, failures included, from in-memory
state and one timer heap, deterministically for a seed. Use it in process
(``AgoraEmulator(config).app`` behind ``httpx.ASGITransport``) or as a server (``cli.py``).
"""

from service.emulators.framework.clock import Clock
from service.emulators.framework.control import ControlError

from .config import EmulatorConfig
from .emulator import AgoraEmulator
from .faults import FaultConfig
from .model import FileRecord, TaskRecord
from .signing import sign_sha1, sign_sha256, signature_headers

__all__ = [
    "AgoraEmulator",
    "Clock",
    "ControlError",
    "EmulatorConfig",
    "FaultConfig",
    "FileRecord",
    "TaskRecord",
    "sign_sha1",
    "sign_sha256",
    "signature_headers",
]
