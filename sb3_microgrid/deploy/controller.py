"""The site controller: measurements in, the exported policy, the env's safety supervisor, setpoints in kW out.

**Fallback.** Bad or missing measurements never stop the control loop. When any value fails its check (NaN,
``null``, out of range, a stale timestamp, a series of the wrong length, an unknown charger, ...), or the
policy fails or returns something that is not an action, the decision names every problem in ``errors``, logs
them, and requests the fallback instead of the policy's action: **the battery idle and every connected car
charging at full power, within what it still wants** (action ``[0, +1, ..., +1]``, or ``[0, +1]`` with the
aggregate EV interface). The fallback passes
through the same supervisor as the policy, on the measurements that are good (:mod:`.supervision` says what
replaces the others), so it keeps every limit the supervisor knows. Should the supervisor itself fail, every
setpoint is 0 kW.
"""

from __future__ import annotations

import datetime as dt
import logging
import numbers
import sys
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import yaml

from ..envs.layout import ObservationLayout, action_size
from ..envs.supervisor import battery_range, port_range
from ..export.onnx_policy import MANIFEST, ManifestError, OnnxPolicy, scenario_fingerprint
from ..scenario import Scenario, ScenarioError, load_scenario
from .checks import Checker, site_ranges
from .observation import ObservationBuilder
from .schema import Decision, Measurements
from .site_state import SiteState, check_timestamp, read_state
from .supervision import Setpoints, supervise

logger = logging.getLogger(__name__)


class Policy(Protocol):
    """What the controller runs: :class:`~sb3_microgrid.export.OnnxPolicy` or a stand-in with its manifest."""

    manifest: dict[str, Any]

    def act(self, obs: np.ndarray) -> np.ndarray: ...


def fallback_action(n_ev_entries: int) -> np.ndarray:
    """The fallback's request in the env's action space: battery 0 (idle), every EV entry +1 (full power; the
    supervisor limits each charger to what its car still wants and frees ports with no car).

    :param n_ev_entries: EV entries of the action: ``ev.n_ports``, or 1 with ``ev.dispatch: aggregate``
    """
    return np.concatenate([[0.0], np.ones(n_ev_entries)])


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class SiteController:
    """Decides one step of a site from its measurements (see the module docstring for the fallback).

    :param policy: the exported policy (its ``manifest`` gives the observation layout and window scales)
    :param scenario: the site the policy was exported for
    :param max_age_s: how far a request's timestamp may lie from the clock (s, a finite number > 0); ``None``: one step
    :param clock: the server's clock (an aware time); ``None`` skips the staleness check, for a replayed or
        simulated day
    :raises ManifestError: for a policy the controller cannot run on measurements (recurrent, residual, or an
        observation it cannot build)
    :raises ValueError: for a ``max_age_s`` that is not a finite number > 0
    """

    def __init__(
        self, policy: Policy, scenario: Scenario, max_age_s: float | None = None, clock: Callable[[], dt.datetime] | None = utc_now
    ) -> None:
        manifest = policy.manifest
        n_actions = action_size(scenario)
        if manifest.get("recurrent"):
            raise ManifestError("a recurrent policy (ppo_lstm) carries a state from step to step; the site controller runs feed-forward policies only")
        if not manifest["action"]["is_env_action"]:
            raise ManifestError("the policy corrects a base controller that runs on the simulator (its env_wrappers); the site controller needs a policy of the env's actions")
        if manifest["action"]["size"] != n_actions:
            raise ManifestError(
                f"the policy gives {manifest['action']['size']} action entries, the scenario takes {n_actions} "
                f"(battery and {'the EV fleet' if scenario.ev.dispatch == 'aggregate' else 'ev.n_ports chargers'})"
            )
        observation = manifest["observation"]
        if "window_scale" not in observation:
            raise ManifestError("the manifest has no observation.window_scale (the divisors of the window's columns); export the model again")
        try:
            self.builder = ObservationBuilder(
                ObservationLayout.from_dict(observation["layout"]), scenario, observation["window_scale"], observation.get("site_context")
            )
        except ValueError as err:
            raise ManifestError(str(err)) from None
        self.policy = policy
        self.scenario = scenario
        self.layout = self.builder.layout
        # NaN would disable the staleness check (no age exceeds it), a negative age would make every request stale
        allowed = isinstance(max_age_s, numbers.Real) and not isinstance(max_age_s, bool) and 0 < max_age_s <= sys.float_info.max
        if max_age_s is not None and not allowed:
            raise ValueError(f"max_age_s must be a finite number of seconds > 0, or None (one step); got {max_age_s!r}")
        self.max_age_s = scenario.step_hours * 3600.0 if max_age_s is None else float(max_age_s)
        self.clock = clock
        self._ranges = site_ranges(scenario)
        #: decisions made, and how many of them were the fallback's
        self.decisions = self.fallbacks = 0
        # Compile the supervisor's functions now (numba, cached on disk), not in the first decision.
        battery_range(0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0)
        port_range(True, 0.0, 0.0, 1.0, 1.0, 1.0, False)

    @classmethod
    def from_export(cls, path: str | Path, max_age_s: float | None = None, clock: Callable[[], dt.datetime] | None = utc_now) -> SiteController:
        """The controller of an export folder (``sb3-microgrid export``): its ``policy.onnx`` on onnxruntime (one
        thread) and its scenario YAML, which must be the scenario the manifest's ``scenario.sha256`` records.

        :raises ManifestError: naming the file and the problem, for a folder that cannot be used
        """
        policy = OnnxPolicy(path, intra_op_threads=1)
        recorded = policy.manifest["scenario"]
        file = Path(path) / recorded["file"]
        try:
            scenario = load_scenario(file)
        except ScenarioError as err:
            raise ManifestError(f"{file}: {err}") from None
        # The site's limits and the observation's scales come from this file: an edited one would run the policy on a
        # site it was not exported for. Hashed as written, not as loaded: a scenario field added to the package since
        # the export (its default keeps the old behaviour) must not make the export unusable.
        found = scenario_fingerprint(yaml.safe_load(file.read_text(encoding="utf-8")))
        if found != recorded["sha256"]:
            raise ManifestError(
                f"{file} is not the scenario the policy was exported for: its sha256 (scenario_fingerprint) is "
                f"{found}, {Path(path) / MANIFEST} records scenario.sha256 = {recorded['sha256']}; export the model again"
            )
        return cls(policy, scenario, max_age_s=max_age_s, clock=clock)

    @property
    def manifest(self) -> dict[str, Any]:
        return self.policy.manifest

    def decide(self, measurements: Measurements) -> Decision:
        """The setpoints of the step ``measurements`` describe. Never raises: a problem gives the fallback,
        named in ``errors``."""
        checker = Checker(self._ranges)
        state: SiteState | None = None
        action = None
        try:
            if self.clock is not None:
                check_timestamp(measurements.timestamp, self.clock(), self.max_age_s, checker)
            state = read_state(measurements, self.scenario, self.layout, checker)
            if not checker.issues:
                action = self._act(state)
        except Exception as err:  # noqa: BLE001 - a failing policy (or a bug) must not stop the control loop
            logger.exception("decision at %s failed", measurements.timestamp)
            field, what = ("policy", "the policy") if state is not None else ("measurements", "reading the measurements")
            checker.add(field, f"{what} failed: {type(err).__name__}: {err}")
        fallback = action is None
        if fallback:
            action = fallback_action(action_size(self.scenario) - 1)
            logger.warning("fallback at %s: %s", measurements.timestamp, "; ".join(issue.message for issue in checker.issues))
        setpoints = None
        if state is not None:
            try:
                setpoints = supervise(action, state, self.scenario)
            except Exception as err:  # noqa: BLE001 - as above: every setpoint 0 kW rather than no answer
                logger.exception("supervisor failed at %s", measurements.timestamp)
                checker.add("supervisor", f"the supervisor failed: {type(err).__name__}: {err}")
        if setpoints is None:
            setpoints = Setpoints(0.0, np.zeros(self.scenario.ev.n_ports), 0.0, 0.0, False)
        self.decisions += 1
        self.fallbacks += fallback
        return Decision(
            timestamp=measurements.timestamp,
            step_start=None if state is None else state.step_start,
            battery_kw=setpoints.battery_kw,
            charger_kw=setpoints.charger_kw.tolist(),
            curtail_kw=setpoints.curtail_kw,
            shed_kw=setpoints.shed_kw,
            intervened=setpoints.intervened,
            fallback=fallback,
            action=np.asarray(action, dtype=np.float64).tolist(),
            errors=checker.issues,
        )

    def _act(self, state: SiteState) -> np.ndarray:
        """The policy's action for a clean state, checked: the supervisor would read NaN as 0, but a policy
        that returns NaN is broken and gets the fallback."""
        action = np.asarray(self.policy.act(self.builder.build(state)), dtype=np.float64)
        expected = (action_size(self.scenario),)
        if action.shape != expected or not np.isfinite(action).all():
            raise ValueError(f"the policy returned {action.tolist()!r}; expected {expected[0]} finite numbers")
        return action
