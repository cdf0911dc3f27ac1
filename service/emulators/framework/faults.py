"""Fault injection: what may go wrong, and a seeded random stream per kind of fault.

Each kind of fault draws from its own ``random.Random`` seeded from ``(seed, stream name)``, so
turning one fault on does not shift the sequence of another, and the same seed with the same
requests gives the same failures. Each emulator names its endpoints (``FaultConfig.ENDPOINTS``
in a subclass) and the transient errors each may return (the injector's ``errors`` table); a
"timeout" hangs longer than any sane client timeout.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Self, TypeVar

#: (HTTP status, provider code, reason) of one transient error.
ErrorKind = tuple[int, int, str]
ErrorTable = Mapping[str, tuple[ErrorKind, ...]]


def _rate(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a probability in [0, 1]")
    return float(value)


def _range(name: str, value: Any) -> tuple[float, float]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        or not 0 <= value[0] <= value[1]
    ):
        raise ValueError(f"{name} must be a number or a [min, max] pair with 0 <= min <= max")
    return (float(value[0]), float(value[1]))


def _rates(name: str, value: Any, endpoints: tuple[str, ...]) -> dict[str, float]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"*": _rate(name, value)}
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a probability or an object of endpoint -> probability")
    out: dict[str, float] = {}
    for key, rate in value.items():
        if key != "*" and key not in endpoints:
            raise ValueError(f"{name}: unknown endpoint {key!r}")
        out[str(key)] = _rate(f"{name}.{key}", rate)
    return out


@dataclass(frozen=True)
class FaultConfig:
    """Every injectable fault. Rates are probabilities per request, task or notification.

    ``error_rates`` / ``timeout_rates`` map an endpoint name (or ``"*"`` for all) to a rate.
    ``side_effect_rate`` is the chance that a start/stop answered with 65/62 or a timeout had
    in fact been carried out, as Agora documents ("the request reached the backend").
    ``latency`` and ``hang_seconds`` are real seconds (they shape what the client sees);
    ``callback_delay`` is emulated seconds. ``qps_limit`` overrides the configured limit
    (``0`` disables). ``kill_rate_per_hour`` kills each running task at that Poisson rate;
    ``kill_failover_ratio`` of those kills fail over, the rest die for good.
    """

    error_rates: Mapping[str, float] = field(default_factory=dict)
    timeout_rates: Mapping[str, float] = field(default_factory=dict)
    side_effect_rate: float = 0.5
    latency: tuple[float, float] = (0.0, 0.0)
    hang_seconds: float = 30.0
    qps_limit: float | None = None
    kill_rate_per_hour: float = 0.0
    kill_failover_ratio: float = 1.0
    token_expired_rate: float = 0.0
    token_invalid_rate: float = 0.0
    backup_rate: float = 0.0
    callback_drop_rate: float = 0.0
    callback_duplicate_rate: float = 0.0
    callback_delay_rate: float = 0.0
    callback_delay: tuple[float, float] = (1.0, 5.0)
    callback_reorder_rate: float = 0.0
    seed: int | None = None

    #: The endpoint names ``error_rates`` / ``timeout_rates`` may use (set by each emulator).
    ENDPOINTS: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        self.from_json(self.to_json())  # one validation path for code and JSON

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """Build from the control API's JSON; unknown keys and bad values raise ``ValueError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key in ("error_rates", "timeout_rates"):
                values[key] = _rates(key, value, cls.ENDPOINTS)
            elif key in ("latency", "callback_delay"):
                values[key] = _range(key, value)
            elif key == "seed":
                if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                    raise ValueError("seed must be an integer or null")
                values[key] = value
            elif key == "qps_limit":
                if value is not None and (
                    isinstance(value, bool) or not isinstance(value, int | float) or value < 0
                ):
                    raise ValueError("qps_limit must be a number >= 0 or null")
                values[key] = value
            elif key in ("hang_seconds", "kill_rate_per_hour"):
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise ValueError(f"{key} must be a number >= 0")
                values[key] = float(value)
            else:
                values[key] = _rate(key, value)
        return _build(cls, values)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["error_rates"] = dict(self.error_rates)
        out["timeout_rates"] = dict(self.timeout_rates)
        out["latency"] = list(self.latency)
        out["callback_delay"] = list(self.callback_delay)
        return out

    def merged(self, changes: Mapping[str, Any]) -> Self:
        """This config with ``changes`` (control API JSON) applied on top."""
        return type(self).from_json({**self.to_json(), **changes})

    def rate_for(self, rates: Mapping[str, float], endpoint: str) -> float:
        return rates.get(endpoint, rates.get("*", 0.0))


C = TypeVar("C", bound=FaultConfig)


def _build(cls: type[C], values: dict[str, Any]) -> C:
    obj = object.__new__(cls)
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        object.__setattr__(obj, f.name, values.get(f.name, default))
    return obj


@dataclass(frozen=True)
class ApiFault:
    """What to do to one API request instead of answering normally.

    ``hang`` > 0: sleep that long first (a timeout). ``apply`` says whether the operation is
    carried out before the error is returned.
    """

    status: int
    code: int
    reason: str
    apply: bool
    hang: float = 0.0


@dataclass(frozen=True)
class CallbackPlan:
    """How one notification will be (mis)delivered: decided when it is emitted."""

    drop: bool = False
    copies: int = 1
    delay: float = 0.0
    hold: bool = False


@dataclass(frozen=True)
class ProviderErrors:
    """How a provider's gateway fails: ``transient`` maps each endpoint to the transient errors
    it may answer; ``timeout`` is the error a hung request finally returns; ``may_have_applied``
    the codes after which the operation may nevertheless have happened (drawn with
    ``side_effect_rate``)."""

    transient: ErrorTable
    timeout: ErrorKind
    may_have_applied: frozenset[int]


class FaultInjector(Generic[C]):
    """Draws fault decisions from per-stream seeded generators, answering in ``errors``."""

    def __init__(self, config: C, seed: int, errors: ProviderErrors) -> None:
        self._errors = errors.transient
        self._timeout = errors.timeout
        self._may_have_applied = errors.may_have_applied
        self._config = config
        self._seed = config.seed if config.seed is not None else seed
        self._streams: dict[str, random.Random] = {}

    @property
    def config(self) -> C:
        return self._config

    def reconfigure(self, config: C) -> None:
        """Swap the settings; a new ``seed`` restarts every stream."""
        if config.seed is not None and config.seed != self._config.seed:
            self._seed = config.seed
            self._streams.clear()
        self._config = config

    def stream(self, name: str) -> random.Random:
        rng = self._streams.get(name)
        if rng is None:
            rng = self._streams[name] = random.Random(f"{self._seed}:{name}")
        return rng

    def _hit(self, name: str, rate: float) -> bool:
        return rate > 0 and self.stream(name).random() < rate

    def api_fault(self, endpoint: str) -> ApiFault | None:
        cfg = self._config
        if self._hit(f"timeout:{endpoint}", cfg.rate_for(cfg.timeout_rates, endpoint)):
            applied = self._hit(f"side-effect:{endpoint}", cfg.side_effect_rate)
            status, code, reason = self._timeout
            return ApiFault(status, code, reason, applied, hang=cfg.hang_seconds)
        if self._hit(f"error:{endpoint}", cfg.rate_for(cfg.error_rates, endpoint)):
            status, code, reason = self.stream(f"error-kind:{endpoint}").choice(
                self._errors[endpoint]
            )
            applied = code in self._may_have_applied and self._hit(
                f"side-effect:{endpoint}", cfg.side_effect_rate
            )
            return ApiFault(status, code, reason, applied)
        return None

    def latency(self) -> float:
        low, high = self._config.latency
        if high <= 0:
            return 0.0
        return self.stream("latency").uniform(low, high)

    def kill_after(self) -> float | None:
        """Emulated seconds until a fresh task is killed, or ``None`` if it never is."""
        rate = self._config.kill_rate_per_hour
        if rate <= 0:
            return None
        return self.stream("kill").expovariate(rate / 3600.0)

    def kill_fails_over(self) -> bool:
        return self.stream("kill-kind").random() < self._config.kill_failover_ratio

    def token_error(self) -> int | None:
        """109 (expired) or 110 (invalid) for a fresh task whose recorder will fail to join."""
        if self._hit("token-expired", self._config.token_expired_rate):
            return 109
        if self._hit("token-invalid", self._config.token_invalid_rate):
            return 110
        return None

    def backuped(self) -> bool:
        return self._hit("backup", self._config.backup_rate)

    def callback_plan(self, redundant: bool) -> CallbackPlan:
        cfg = self._config
        if self._hit("cb-drop", cfg.callback_drop_rate):
            return CallbackPlan(drop=True)
        copies = 2 if redundant or self._hit("cb-duplicate", cfg.callback_duplicate_rate) else 1
        delay = 0.0
        if self._hit("cb-delay", cfg.callback_delay_rate):
            delay = self.stream("cb-delay-len").uniform(*cfg.callback_delay)
        hold = self._hit("cb-reorder", cfg.callback_reorder_rate)
        return CallbackPlan(copies=copies, delay=delay, hold=hold)
