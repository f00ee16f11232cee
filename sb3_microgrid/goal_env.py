"""``MicrogridGoal-v0``: ``Microgrid-v0`` asked to keep the day within a rupee and CO2 budget.

The goal-conditioned face follows SB3's goal-env contract (``HerReplayBuffer``,
``stable_baselines3/common/envs/bit_flipping_env.py``): a ``Dict`` observation with ``observation``
(the flat microgrid observation, its ``.layout`` kept), ``achieved_goal`` and ``desired_goal``, and a
vectorized :meth:`MicrogridGoalEnv.compute_reward`. The design and its reasons are in
``docs/replay_her.md``. It lives above ``envs`` and ``baselines`` because it uses both (the naive
controller for its units, the dispatch LP to calibrate its budgets). In short:

* Units: percent of what today's **naive** operation (:class:`~sb3_microgrid.baselines.NaiveController`,
  run on the same day by a second core) costs and emits over the episode. The controllable part of the
  bill is a few percent of it, so plain fractions (0.97 vs 1.00) would bury the goal in the inputs.
* ``achieved_goal`` = ``[cost excess, CO2 excess, elapsed]``: the running totals so far minus naive's
  running totals at the same step (percent of naive's episode totals), and the fraction of the episode
  elapsed. Naive operation achieves ``[0, 0, t / T]`` at every step. At the last step the CO2 total
  counts the refill of a battery left below its start, as the rupee total already does.
* ``desired_goal`` = ``[cost budget, CO2 budget, 1]``: the budget, as an excess over naive, for the end
  of the episode.
* Reward: 0 before the last step; at the last step minus the percentage points by which the episode's
  totals exceed the budget (cost and CO2 added). ``info["is_success"]``: the last step is within both
  budgets. The reward reads the elapsed entry of ``achieved_goal`` to find the last step; the last entry
  of ``desired_goal`` is 1 for the env's own goals and, for hindsight goals, the elapsed fraction of the
  step they were taken from; the reward does not read it.
"""

from __future__ import annotations

import numbers
from typing import Any, Sequence

import gymnasium as gym
import numpy as np

from .baselines.lp import solve_dispatch
from .baselines.base import PORTS
from .baselines.naive import naive_action
from .baselines.optimal import episode_problem
from .common.arguments import checked_number
from .data import MicrogridData
from .envs import STEP_KEYS, MicrogridCore, MicrogridEnv
from .scenario import Difficulty, Scenario

_COST, _CO2 = STEP_KEYS.index("cost"), STEP_KEYS.index("emissions_kg")

Budget = tuple[float, float]
BudgetRange = tuple[tuple[float, float], tuple[float, float]]


#: Most ``calibration_days``: a year of days covers every season, about 2.5 s of LP solves (6.5 ms a day on
#: ``campus``), paid by every env of a VecEnv at construction; the whole train split (2,922 days) would take 20 s each.
MAX_CALIBRATION_DAYS = 366
#: Naive paths a goal env keeps, by (day, difficulty): about 4 MB at a day of 24 steps.
NAIVE_PATHS_KEPT = 10_000


def _two(value: Any) -> list[Any] | None:
    """The items of ``value`` if it is a sequence or array of two (a string is not), else ``None``. Types are checked
    before numpy sees the value: it turns strings, ragged lists and mappings into errors that do not name it."""
    if isinstance(value, np.ndarray):
        value = value.tolist()  # a 0-d array gives a scalar, refused below
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)) or len(value) != 2:
        return None
    return list(value)


def _pair(value: Any) -> Budget | None:
    """``value`` as two finite floats if it is two real numbers (not booleans), else ``None``."""
    items = _two(value)
    if items is None or not all(isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) for v in items):
        return None
    try:
        pair = float(items[0]), float(items[1])
    except OverflowError:  # an int too large for a float
        return None
    return pair if np.isfinite(pair).all() else None


def _check_calibration_days(days: Any) -> int:
    """``days`` as an ``int``.

    :param days: calibration days (:meth:`MicrogridGoalEnv.calibrate_budget_range`)
    :raises ValueError: naming ``calibration_days``, unless it is an integer in ``[1,`` :data:`MAX_CALIBRATION_DAYS` ``]``
    """
    return checked_number("calibration_days", days, 1, MAX_CALIBRATION_DAYS, integer=True)


def _check_budget(budget: Any) -> Budget:
    """``budget`` as ``(cost, co2)`` floats.

    :param budget: ``(cost, co2)`` in percent above (+) or below (-) naive operation
    :raises ValueError: naming ``budget``, unless it is two finite numbers
    """
    pair = _pair(budget)
    if pair is None:
        raise ValueError(f"budget = {budget!r} must be two finite numbers: (cost, CO2) in percent above (+) or below (-) naive operation")
    return pair


def _check_range(budget_range: Any) -> BudgetRange:
    """``budget_range`` as floats.

    :param budget_range: ``((cost_low, cost_high), (co2_low, co2_high))`` in percent vs naive operation
    :raises ValueError: naming ``budget_range``, unless it is two pairs of finite numbers, each low <= high
    """
    items = _two(budget_range)
    pairs = [] if items is None else [pair for pair in map(_pair, items) if pair is not None]
    if len(pairs) != 2 or any(low > high for low, high in pairs):
        raise ValueError(
            f"budget_range = {budget_range!r} must be ((cost_low, cost_high), (co2_low, co2_high)), finite, low <= high, in percent vs naive operation"
        )
    return pairs[0], pairs[1]


class MicrogridGoalEnv(MicrogridEnv):
    """``Microgrid-v0`` with a per-episode (₹, kg CO2) budget as a goal (see the module docstring).

    Same days, forecast noise and physics as ``Microgrid-v0`` for the same seed; the budget is drawn
    after them.

    :param scenario: preset name, YAML path, mapping or :class:`~sb3_microgrid.scenario.Scenario`
    :param split: ``"train"``, ``"validation"``, ``"test"`` or ``"all"``
    :param data: data to use instead of the scenario's own source
    :param budget_range: ``((cost_low, cost_high), (co2_low, co2_high))``, percent vs naive, from which
        each episode's budget is drawn uniformly; ``None`` calibrates it (:meth:`calibrate_budget_range`)
    :param budget: a fixed ``(cost, co2)`` budget for every episode instead of drawing one
    :param calibration_days: days of ``split`` the calibration solves the optimum on, in ``[1,``
        :data:`MAX_CALIBRATION_DAYS` ``]``; checked also when ``budget_range`` is given
    :param env_kwargs: ``seed`` and ``render_mode``, as for :class:`~sb3_microgrid.envs.MicrogridEnv`
    """

    def __init__(
        self,
        scenario: str | Scenario | dict | None = None,
        split: str = "train",
        *,
        data: MicrogridData | None = None,
        budget_range: Sequence[Sequence[float]] | None = None,
        budget: Sequence[float] | None = None,
        calibration_days: int = 12,
        **env_kwargs: Any,
    ) -> None:
        # checked before the env loads its data; calibration_days also when a range is given (not ignored silently)
        fixed = None if budget is None else _check_budget(budget)
        explicit = None if budget_range is None else _check_range(budget_range)
        days = _check_calibration_days(calibration_days)
        super().__init__(scenario=scenario, split=split, data=data, **env_kwargs)
        # The naive twin: same site and day, driven by naive's constant action, for the units; naive acts per
        # EV port, so under the aggregate EV interface it runs on the ports twin, as evaluate runs it.
        ports = self.scenario.replace(ev__dispatch=PORTS)
        self._twin = MicrogridCore(ports, 1, split, data)
        self._naive_action = naive_action(ports)[None, :]
        goal = gym.spaces.Box(
            np.array([-np.inf, -np.inf, 0.0], dtype=np.float32), np.array([np.inf, np.inf, 1.0], dtype=np.float32), dtype=np.float32
        )
        self.observation_space = gym.spaces.Dict({"observation": self.observation_space, "achieved_goal": goal, "desired_goal": goal})
        self._budget = fixed
        self._naive_paths: dict[tuple[str, Difficulty], np.ndarray] = {}
        self.budget_range = explicit if explicit is not None else self.calibrate_budget_range(days)
        self._naive_path = np.ones((self.scenario.episode_steps + 1, 2))
        self._desired = np.array([0.0, 0.0, 1.0], dtype=np.float32)

    # ---- units --------------------------------------------------------------------------------
    def _run_naive(self, day: str) -> np.ndarray:
        """Naive operation's running (cost, kg CO2) totals on ``day``: (T + 1, 2), row 0 zeros. They depend on the day
        and the difficulty alone, so each is run once (up to :data:`NAIVE_PATHS_KEPT` of them: a difficulty drawn
        anew each episode would grow the store without end)."""
        key = (day, self.core.difficulty[0])
        if key not in self._naive_paths:
            if len(self._naive_paths) >= NAIVE_PATHS_KEPT:
                self._naive_paths.clear()
            self._naive_paths[key] = self._naive_totals(day)
        return self._naive_paths[key]

    def _naive_totals(self, day: str) -> np.ndarray:
        """:meth:`_run_naive`'s totals, run on the twin."""
        self._twin.difficulty[0] = self.core.difficulty[0]
        # physics ignores the forecast noise, so any generator gives the same totals
        self._twin.reset([np.random.default_rng(0)], [day])
        path = np.zeros((self.scenario.episode_steps + 1, 2))
        for t in range(self.scenario.episode_steps):
            info = self._twin.step(self._naive_action)[3]
            path[t + 1] = path[t] + info[0, [_COST, _CO2]]
        path[-1, 1] += self._shortfall_co2(self._twin)
        if not (path[-1] > 0).all():
            raise ValueError(
                f"MicrogridGoal-v0 measures budgets in percent of naive operation's cost and CO2, which must be > 0; "
                f"on {day} they are Rs {path[-1, 0]:.6g} and {path[-1, 1]:.6g} kg"
            )
        return path

    def calibrate_budget_range(self, days: int) -> BudgetRange:
        """The default budget range, from the scenario's own data: on ``days`` days spread over the
        split, the perfect-foresight optimum's cost and CO2 (the dispatch LP's schedule) as an excess
        over naive. Each component ranges from the best of those days (tight: out of reach on most
        days) to as far above naive (loose).

        :param days: number of calibration days, in ``[1,`` :data:`MAX_CALIBRATION_DAYS` ``]``; a split of fewer
            days has each solved once
        :raises ValueError: naming ``calibration_days`` and that range
        """
        days = _check_calibration_days(days)
        every = self.core.start_days
        excess = []
        for i in np.unique(np.linspace(0, len(every) - 1, days).round().astype(int)):  # a short split's days once each
            day = every[i]
            naive = self._run_naive(day)[-1]
            self.core.reset([np.random.default_rng(0)], [day])
            problem = episode_problem(self)
            schedule = solve_dispatch(problem)
            shortfall = max(problem.energy_ref - schedule.energy_kwh[-1], 0.0)
            co2 = float(schedule.grid_import_kw @ problem.emission) * self.scenario.step_hours + self._shortfall_co2(self.core, shortfall)
            excess.append(100.0 * (np.array([schedule.cost, co2]) - naive) / naive)
        low = np.minimum(np.min(excess, axis=0), 0.0)
        return (float(low[0]), float(-low[0])), (float(low[1]), float(-low[1]))

    def _shortfall_co2(self, core: MicrogridCore, shortfall_kwh: float | None = None) -> float:
        """kg CO2 of the end-of-episode rule: stored energy below the start (``core``'s own at its
        episode's end by default) counts as bought back through the charger at the episode's dirtiest
        hour, as the rupee rule prices it at the dearest. Without it a CO2 budget could be met by
        emptying the battery. A surplus earns nothing: exports earn no CO2 credit in the env either."""
        if shortfall_kwh is None:
            shortfall_kwh = max(core.start_energy[0] - core.energy[0], 0.0)
        return shortfall_kwh / self.scenario.battery.charge_efficiency * float(core.episode.emission[0].max())

    # ---- goal API -----------------------------------------------------------------------------
    def set_budget(self, budget: Sequence[float] | None) -> Budget | None:
        """Use a fixed ``(cost, co2)`` budget (percent vs naive) from the next reset on, or ``None`` to
        draw one per episode again. Reachable through ``VecEnv.env_method("set_budget", ...)``."""
        self._budget = None if budget is None else _check_budget(budget)
        return self._budget

    def compute_reward(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any) -> np.ndarray:
        """Minus the percentage points by which the episode's totals exceed the budget, at the last
        step; 0 before it. Vectorized: ``(batch, 3)`` goals give ``(batch,)`` rewards, ``(3,)`` a scalar.

        :param achieved_goal: ``[cost excess, CO2 excess, elapsed]`` after the step
        :param desired_goal: ``[cost budget, CO2 budget, ...]`` (the last entry is not read)
        :param info: unused (HER passes empty dicts unless ``copy_info_dict``)
        """
        achieved = np.asarray(achieved_goal, dtype=np.float32)
        desired = np.asarray(desired_goal, dtype=np.float32)
        within = np.minimum(desired[..., :2] - achieved[..., :2], 0.0).sum(axis=-1)
        last = achieved[..., 2] > 1.0 - 0.5 / self.scenario.episode_steps
        return np.where(last, within, 0.0).astype(np.float32)

    # ---- episode ------------------------------------------------------------------------------
    @property
    def naive_totals(self) -> np.ndarray:
        """Naive operation's (Rs, kg CO2) over the current episode: the 100 % of the goal units."""
        return self._naive_path[-1].copy()

    def achieved_goal(self) -> np.ndarray:
        """``[cost excess, CO2 excess, elapsed]`` of the current episode so far (float32)."""
        t, steps = self.core.t, self.scenario.episode_steps
        totals = self.core.totals[0, [_COST, _CO2]].copy()
        if t == steps:
            totals[1] += self._shortfall_co2(self.core)
        excess = 100.0 * (totals - self._naive_path[t]) / self._naive_path[-1]
        return np.array([excess[0], excess[1], t / steps], dtype=np.float32)

    def _goals(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        return {"observation": obs, "achieved_goal": self.achieved_goal(), "desired_goal": self._desired.copy()}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict]:
        """As ``Microgrid-v0``'s reset; ``options`` may also hold ``"budget": (cost, co2)`` for this
        episode. The info adds ``naive_cost`` (Rs), ``naive_emissions_kg`` and ``budget``."""
        budget = None
        if isinstance(options, dict):  # other options are left for Microgrid-v0's reset to refuse
            options = dict(options)
            budget = options.pop("budget", None)
        # checked before the reset: a bad budget leaves the env on its episode
        asked = None if budget is None else _check_budget(budget)
        obs, info = super().reset(seed=seed, options=options)
        self._naive_path = self._run_naive(info["date"])
        if asked is not None:
            chosen = asked
        elif self._budget is not None:
            chosen = self._budget
        else:
            (c_lo, c_hi), (e_lo, e_hi) = self.budget_range
            chosen = (float(self.np_random.uniform(c_lo, c_hi)), float(self.np_random.uniform(e_lo, e_hi)))
        self._desired = np.array([chosen[0], chosen[1], 1.0], dtype=np.float32)
        info.update(naive_cost=float(self._naive_path[-1, 0]), naive_emissions_kg=float(self._naive_path[-1, 1]), budget=chosen)
        return self._goals(obs), info

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        """As ``Microgrid-v0``'s step, with the goal reward and ``info["is_success"]``."""
        obs, _, terminated, truncated, info = super().step(action)
        goals = self._goals(obs)
        reward = float(self.compute_reward(goals["achieved_goal"], goals["desired_goal"], info))
        info["is_success"] = bool(terminated and reward == 0.0)  # the last reward is 0 exactly when both budgets hold
        return goals, reward, terminated, truncated, info
