"""The dispatch LP shared by the perfect-foresight optimum and the MPC, solved with HiGHS.

The model is the env's physics (docs/environment.md), written as linear constraints over a horizon
of ``T`` steps of length ``dt``:

* battery ``E_t = (1 - s dt) E_{t-1} + eta_c dt c_t - dt / eta_d d_t`` with ``E_min <= E_t <= E_max``,
  ``0 <= c_t <= P_ch``, ``0 <= d_t <= P_dis`` (the env's net battery power is ``c_t - d_t``);
* grid balance ``imp_t - exp_t = load_t - shed_t - (ren_t - curt_t) + c_t - d_t + sum_ports ev_t``
  with ``imp <= import limit``, ``exp <= export limit``;
* EV session ``k`` at its port from ``start_k`` to ``end_k`` (exclusive): charging ``x`` (and, with
  V2G, discharging ``y``) at most the port power; ``sum eta_ev dt x - dt / eta_ev y + unmet_k =
  energy_k`` when it leaves inside the horizon, ``<= energy_k`` otherwise, with what the steps after the horizon
  cannot deliver at full port power delivered inside it or counted in ``unmet_k``;
* demand charge ``peak_day >= imp_t / pf`` for the steps of that day, ``peak_day >=`` the peak already
  reached that day;
* end-of-horizon rule ``E_T - E_ref = surplus - shortfall``, at the end of every horizon;
* load shed only beyond what the import limit carries with the renewables (:func:`shed_limit`), as the env's
  supervisor sheds only as its last resort.

Objective: energy (import at the import price plus the carbon price on import emissions, export at
the export price), demand charge on each day's peak above what that day already paid, linear wear on
``c + d``, EV penalty on unmet energy, load shedding at its penalty, and the terminal term — the
env's cost components, unweighted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from ..scenario import Scenario

#: The per-step variable blocks of the LP, in column order (each ``T`` columns); EV entries, unmet energy, the
#: days' peaks and the end-of-horizon terms follow.
_STEP_BLOCKS = ("charge", "discharge", "energy", "import", "export", "curtail", "shed")


@dataclass(frozen=True)
class DispatchProblem:
    """One dispatch LP in physical units.

    :param scenario: battery, EV, grid and reward parameters
    :param load_kw: (T,) building load
    :param renewable_kw: (T,) available PV + wind
    :param import_price: (T,) Rs/kWh
    :param emission: (T,) kg CO2/kWh of imports
    :param demand_rate: (T,) Rs per kVA of the day's peak (constant within a day)
    :param day: (T,) day number of each step (for the demand charge), starting at 0
    :param peak_so_far: (days,) kVA peak each day has already paid for
    :param energy0: stored energy before the first step (kWh)
    :param e_min: lowest allowed stored energy (kWh)
    :param e_max: highest allowed stored energy (kWh)
    :param session_port: (K,) port of each EV session
    :param session_start: (K,) first step at which the EV is connected (0 if already connected)
    :param session_end: (K,) step at which it leaves (may exceed T: no deadline in the horizon)
    :param session_energy: (K,) kWh it still asks for
    :param session_delivered: (K,) kWh it has already received (what V2G may give back)
    :param energy_ref: stored energy the end of the horizon is compared with (kWh): the end-of-horizon rule
        applies at every horizon's end, the episode's or not, so stored energy keeps its value there
    :param shortfall_price: Rs per kWh stored below ``energy_ref`` at the end
    :param surplus_price: Rs per kWh stored above ``energy_ref`` at the end
    """

    scenario: Scenario
    load_kw: np.ndarray
    renewable_kw: np.ndarray
    import_price: np.ndarray
    emission: np.ndarray
    demand_rate: np.ndarray
    day: np.ndarray
    peak_so_far: np.ndarray
    energy0: float
    e_min: float
    e_max: float
    session_port: np.ndarray
    session_start: np.ndarray
    session_end: np.ndarray
    session_energy: np.ndarray
    session_delivered: np.ndarray
    energy_ref: float = 0.0
    shortfall_price: float = 0.0
    surplus_price: float = 0.0


@dataclass(frozen=True)
class DispatchSchedule:
    """The LP's set-points and its objective value (Rs)."""

    battery_kw: np.ndarray  # (T,) + charging
    ev_kw: np.ndarray  # (T, P) + charging the car
    energy_kwh: np.ndarray  # (T,) stored energy after each step
    grid_import_kw: np.ndarray  # (T,)
    cost: float


@dataclass(frozen=True)
class DispatchProgram:
    """The LP of a :class:`DispatchProblem` in ``scipy.optimize.linprog``'s form, with what maps its solution
    back to set-points (:meth:`schedule`)."""

    cost: np.ndarray
    a_ub: sp.csr_array
    b_ub: np.ndarray
    a_eq: sp.csr_array
    b_eq: np.ndarray
    bounds: np.ndarray  # (n_var, 2)
    #: variables of the first step's decisions (battery charge and discharge, EV entries of step 0)
    first_step: np.ndarray
    n_steps: int
    n_ports: int
    ev_entries: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # step, port, charge column, discharge column (-1: none)
    paid: float

    def schedule(self, x: np.ndarray, objective: float) -> DispatchSchedule:
        """The set-points of a solution.

        :param x: the solution, one value per column
        :param objective: its objective value (Rs), of which the demand charge already paid is taken off
        """
        T = self.n_steps

        def block(name: str) -> np.ndarray:
            i = _STEP_BLOCKS.index(name)
            return x[i * T : (i + 1) * T]

        step, port, charge, discharge = self.ev_entries
        ev_kw = np.zeros((T, self.n_ports))
        np.add.at(ev_kw, (step, port), x[charge] - np.where(discharge >= 0, x[discharge], 0.0))
        # The demand charge of what each day had already paid is in the objective; the env charges increments.
        return DispatchSchedule(
            battery_kw=block("charge") - block("discharge"),
            ev_kw=ev_kw,
            energy_kwh=block("energy"),
            grid_import_kw=block("import"),
            cost=objective - self.paid,
        )


def solve_dispatch(problem: DispatchProblem) -> DispatchSchedule:
    """Build and solve the LP with HiGHS (``scipy.optimize.linprog``).

    :param problem: the dispatch problem
    :raises RuntimeError: if HiGHS reports anything but an optimal solution
    """
    program = dispatch_program(problem)
    res = linprog(program.cost, A_ub=program.a_ub, b_ub=program.b_ub, A_eq=program.a_eq, b_eq=program.b_eq, bounds=program.bounds, method="highs")
    if res.status != 0:
        raise RuntimeError(f"dispatch LP not solved: {res.message}")
    return program.schedule(res.x, float(res.fun))


def solve_scenarios(problems: Sequence[DispatchProblem]) -> DispatchSchedule:
    """Plan on several forecasts at once: one LP of the problems' blocks whose first-step decisions (battery,
    EV ports) are shared and whose later steps are free in each (recourse), at their mean cost (sample-average
    approximation). The problems must differ only in their forecast series.

    :param problems: one problem per scenario
    :return: the first scenario's plan (its first step is every scenario's); ``cost`` is the mean cost
    :raises ValueError: if ``problems`` is empty or the problems differ in anything but their forecast series
    :raises RuntimeError: if HiGHS reports anything but an optimal solution
    """
    if not problems:
        raise ValueError("problems must be a non-empty list")
    first = problems[0]
    for field in fields(DispatchProblem):
        if field.name not in _SERIES and not all(_same(getattr(p, field.name), getattr(first, field.name)) for p in problems):
            raise ValueError(f"the problems differ in {field.name!r}; scenarios may differ only in {list(_SERIES)}")
    for name in _SERIES:
        if any(np.shape(getattr(p, name)) != np.shape(getattr(first, name)) for p in problems):
            raise ValueError(f"the problems' {name!r} differ in shape; every scenario needs {np.shape(getattr(first, name))}")
    # The blocks share their matrices: only the series' entries of cost, balance and bounds differ.
    program = dispatch_program(first)
    blocks = [(program.cost, program.b_eq, program.bounds)] + [_series_entries(program, p) for p in problems[1:]]
    k, size = len(problems), program.cost.size
    shared = program.first_step
    # row j of block i - 1: x_i[shared[j]] - x_0[shared[j]] = 0
    rows = np.repeat(np.arange((k - 1) * shared.size), 2)
    cols = np.stack([np.add.outer(np.arange(1, k) * size, shared), np.broadcast_to(shared, (k - 1, shared.size))], axis=-1).ravel()
    link = sp.csr_array((np.tile([1.0, -1.0], (k - 1) * shared.size), (rows, cols)), shape=((k - 1) * shared.size, k * size))
    res = linprog(
        np.concatenate([cost for cost, _, _ in blocks]) / k,
        A_ub=_repeat_diagonal(program.a_ub, k),
        b_ub=np.tile(program.b_ub, k),
        A_eq=sp.vstack([_repeat_diagonal(program.a_eq, k), link], format="csr"),
        b_eq=np.concatenate([*(b_eq for _, b_eq, _ in blocks), np.zeros(link.shape[0])]),
        bounds=np.concatenate([bounds for _, _, bounds in blocks]),
        method="highs",
    )
    if res.status != 0:
        raise RuntimeError(f"scenario dispatch LP not solved: {res.message}")
    return program.schedule(res.x[:size], float(res.fun))


#: The forecast series of a :class:`DispatchProblem`: what scenarios of one step may differ in.
_SERIES = ("load_kw", "renewable_kw", "import_price", "emission")


def _same(a: object, b: object) -> bool:
    return bool(np.array_equal(a, b)) if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) else a is b or a == b


def _repeat_diagonal(a: sp.csr_array, k: int) -> sp.csr_array:
    """The block-diagonal matrix of ``k`` copies of ``a``, built from its arrays at once (``scipy.sparse.block_diag``
    converts each copy)."""
    rows, cols = a.shape
    indptr = np.concatenate([[0], (a.indptr[1:] + a.nnz * np.arange(k)[:, None]).ravel()])
    indices = (a.indices + cols * np.arange(k)[:, None]).ravel()
    return sp.csr_array((np.tile(a.data, k), indices, indptr), shape=(k * rows, k * cols))


def _series_entries(program: DispatchProgram, problem: DispatchProblem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``program``'s cost, equality right-hand side and bounds with the entries that depend on the forecast series
    (:data:`_SERIES`) taken from ``problem``; everything else is ``program``'s."""
    sc, T = problem.scenario, program.n_steps
    dt = sc.step_hours

    def block(name: str) -> slice:
        i = _STEP_BLOCKS.index(name)
        return slice(i * T, (i + 1) * T)

    cost, b_eq, bounds = program.cost.copy(), program.b_eq.copy(), program.bounds.copy()
    cost[block("import")] = (problem.import_price + sc.reward.carbon_price_inr_per_kg * problem.emission) * dt
    b_eq[:T] = problem.load_kw - problem.renewable_kw  # the balance rows come first
    bounds[block("curtail"), 1] = problem.renewable_kw
    bounds[block("shed"), 1] = shed_limit(problem)
    return cost, b_eq, bounds


def shed_limit(problem: DispatchProblem) -> np.ndarray:
    """(T,) the most load the LP may shed at each step: what the import limit cannot carry with the renewables, plus
    the charge self-discharge can force to hold the battery at its floor (0 at almost every step). The env sheds
    only as the supervisor's last resort; an LP free to shed the whole load would buy energy or a lower peak at the
    unserved penalty, which no controller can, and stop being a lower bound of the env's cost."""
    battery = problem.scenario.battery
    forced = battery.self_discharge_per_hour * problem.e_max / battery.charge_efficiency
    return np.maximum(problem.load_kw - problem.renewable_kw - problem.scenario.grid.import_limit_kw + forced, 0.0)


def dispatch_program(problem: DispatchProblem) -> DispatchProgram:
    """The LP of ``problem`` (module docstring), not solved."""
    pb, sc = problem, problem.scenario
    bat, ev, grid, rw = sc.battery, sc.ev, sc.grid, sc.reward
    dt = sc.step_hours
    T = pb.load_kw.size
    n_days = int(pb.day.max()) + 1
    v2g = ev.v2g

    # EV entries: one variable per (session, step it is connected inside the horizon).
    first = np.clip(pb.session_start, 0, T)
    last = np.clip(pb.session_end, 0, T)
    lengths = np.maximum(last - first, 0)
    entry_session = np.repeat(np.arange(lengths.size), lengths)
    entry_step = first[entry_session] + (np.arange(entry_session.size) - np.repeat(np.cumsum(lengths) - lengths, lengths))
    n_x = entry_session.size
    n_y = n_x if v2g else 0
    K = lengths.size

    # Variable offsets.
    C, D, E, IMP, EXP, CURT, SHED = (i * T for i in range(len(_STEP_BLOCKS)))
    X = len(_STEP_BLOCKS) * T
    Y = X + n_x
    UNMET = Y + n_y
    PEAK = UNMET + K
    SHORT = PEAK + n_days
    SURPLUS = SHORT + 1
    n_var = SURPLUS + 1
    steps = np.arange(T)

    cost = np.zeros(n_var)
    cost[C : C + T] = bat.wear_cost_inr_per_kwh * dt
    cost[D : D + T] = bat.wear_cost_inr_per_kwh * dt
    cost[EXP : EXP + T] = -grid.export_price_inr_per_kwh * dt
    cost[SHED : SHED + T] = rw.unserved_penalty_inr_per_kwh * dt
    leaves_inside = pb.session_end <= T
    cost[UNMET : UNMET + K] = ev.unmet_penalty_inr_per_kwh
    day_rate = np.zeros(n_days)
    day_rate[pb.day] = pb.demand_rate
    cost[PEAK : PEAK + n_days] = day_rate
    cost[SHORT] = pb.shortfall_price
    cost[SURPLUS] = -pb.surplus_price

    eq_rows, eq_cols, eq_vals, b_eq = [], [], [], []

    def add(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray | float, target: list) -> None:
        target[0].append(np.asarray(rows))
        target[1].append(np.asarray(cols))
        target[2].append(np.broadcast_to(np.asarray(vals, dtype=float), np.shape(rows)))

    eq = (eq_rows, eq_cols, eq_vals)
    # Balance rows 0..T-1: imp - exp - c + d - curt + shed - x + y = load - ren.
    for offset, sign in ((IMP, 1.0), (EXP, -1.0), (C, -1.0), (D, 1.0), (CURT, -1.0), (SHED, 1.0)):
        add(steps, offset + steps, sign, eq)
    add(entry_step, X + np.arange(n_x), -1.0, eq)
    if v2g:
        add(entry_step, Y + np.arange(n_y), 1.0, eq)
    b_eq.append(np.zeros(T))  # the series' entries: _series_entries
    # Storage rows T..2T-1.
    keep = 1.0 - bat.self_discharge_per_hour * dt
    add(T + steps, E + steps, 1.0, eq)
    add(T + steps[1:], E + steps[:-1], -keep, eq)
    add(T + steps, C + steps, -bat.charge_efficiency * dt, eq)
    add(T + steps, D + steps, dt / bat.discharge_efficiency, eq)
    storage_rhs = np.zeros(T)
    storage_rhs[0] = keep * pb.energy0
    b_eq.append(storage_rhs)
    n_eq = 2 * T
    # Sessions that leave inside the horizon: delivered + unmet = asked.
    inside = np.flatnonzero(leaves_inside)
    row_of = np.full(K, -1)
    row_of[inside] = n_eq + np.arange(inside.size)
    in_entries = leaves_inside[entry_session]
    add(row_of[entry_session[in_entries]], X + np.flatnonzero(in_entries), ev.charger_efficiency * dt, eq)
    if v2g:
        add(row_of[entry_session[in_entries]], Y + np.flatnonzero(in_entries), -dt / ev.charger_efficiency, eq)
    add(row_of[inside], UNMET + inside, 1.0, eq)
    b_eq.append(pb.session_energy[inside])
    n_eq += inside.size
    # End of horizon: E_T-1 - surplus + shortfall = E_ref.
    add(np.array([n_eq] * 3), np.array([E + T - 1, SURPLUS, SHORT]), np.array([1.0, -1.0, 1.0]), eq)
    b_eq.append(np.array([pb.energy_ref]))
    n_eq += 1

    ub_rows, ub_cols, ub_vals, b_ub = [], [], [], []
    ub = (ub_rows, ub_cols, ub_vals)
    # Demand: imp_t / pf - peak_day(t) <= 0.
    add(steps, IMP + steps, 1.0 / grid.power_factor, ub)
    add(steps, PEAK + pb.day, -1.0, ub)
    b_ub.append(np.zeros(T))
    n_ub = T
    # Sessions leaving after the horizon: delivered <= asked.
    outside = np.flatnonzero(~leaves_inside)
    row_out = np.full(K, -1)
    row_out[outside] = n_ub + np.arange(outside.size)
    out_entries = ~leaves_inside[entry_session]
    add(row_out[entry_session[out_entries]], X + np.flatnonzero(out_entries), ev.charger_efficiency * dt, ub)
    if v2g:
        add(row_out[entry_session[out_entries]], Y + np.flatnonzero(out_entries), -dt / ev.charger_efficiency, ub)
        b_ub.append(pb.session_energy[outside])
        n_ub += outside.size
        # With V2G the running total must stay within [-delivered so far, asked] at every step, as
        # the env's supervisor enforces; entries are ordered by session then step, so prefix sums
        # are lower-triangular blocks.
        same = entry_session[:, None] == entry_session[None, :]
        prefix = np.argwhere(same & (np.arange(n_x)[None, :] <= np.arange(n_x)[:, None]))
        rows, cols = prefix[:, 0], prefix[:, 1]
        add(n_ub + rows, X + cols, ev.charger_efficiency * dt, ub)
        add(n_ub + rows, Y + cols, -dt / ev.charger_efficiency, ub)
        b_ub.append(pb.session_energy[entry_session])
        n_ub += n_x
        add(n_ub + rows, X + cols, -ev.charger_efficiency * dt, ub)
        add(n_ub + rows, Y + cols, dt / ev.charger_efficiency, ub)
        b_ub.append(pb.session_delivered[entry_session])
        n_ub += n_x
    else:
        b_ub.append(pb.session_energy[outside])
        n_ub += outside.size
    # Sessions leaving after the horizon: what the steps after it cannot deliver at full power is delivered inside it,
    # or paid as unmet. Without it a plan waited for the departure to enter its window, and a car needing more than
    # the rest of its stay can take was never filled (5-minute steps, a 2-hour window).
    after = (pb.session_end[outside] - T) * ev.port_power_kw * ev.charger_efficiency * dt
    row_need = np.full(K, -1)
    row_need[outside] = n_ub + np.arange(outside.size)
    add(row_need[entry_session[out_entries]], X + np.flatnonzero(out_entries), -ev.charger_efficiency * dt, ub)
    if v2g:
        add(row_need[entry_session[out_entries]], Y + np.flatnonzero(out_entries), dt / ev.charger_efficiency, ub)
    add(row_need[outside], UNMET + outside, -1.0, ub)
    b_ub.append(-np.maximum(pb.session_energy[outside] - after, 0.0))
    n_ub += outside.size

    lo = np.zeros(n_var)
    hi = np.full(n_var, np.inf)
    hi[C : C + T] = bat.charge_power_kw
    hi[D : D + T] = bat.discharge_power_kw
    lo[E : E + T], hi[E : E + T] = pb.e_min, pb.e_max
    hi[IMP : IMP + T] = grid.import_limit_kw
    hi[EXP : EXP + T] = grid.export_limit_kw
    hi[X : X + n_x] = ev.port_power_kw
    hi[Y : Y + n_y] = ev.port_power_kw
    lo[PEAK : PEAK + n_days] = pb.peak_so_far

    a_eq = sp.csr_array((np.concatenate(eq_vals), (np.concatenate(eq_rows), np.concatenate(eq_cols))), shape=(n_eq, n_var))
    a_ub = sp.csr_array((np.concatenate(ub_vals), (np.concatenate(ub_rows), np.concatenate(ub_cols))), shape=(n_ub, n_var))
    charge = X + np.arange(n_x)
    discharge = Y + np.arange(n_x) if v2g else np.full(n_x, -1)
    program = DispatchProgram(
        cost=cost,
        a_ub=a_ub,
        b_ub=np.concatenate(b_ub),
        a_eq=a_eq,
        b_eq=np.concatenate(b_eq),
        bounds=np.stack([lo, hi], axis=1),
        first_step=np.r_[C, D, charge[entry_step == 0], discharge[(entry_step == 0) & (discharge >= 0)]],
        n_steps=T,
        n_ports=ev.n_ports,
        ev_entries=(entry_step, pb.session_port[entry_session], charge, discharge),
        paid=float(day_rate @ pb.peak_so_far),
    )
    cost, b_eq, bounds = _series_entries(program, pb)
    return replace(program, cost=cost, b_eq=b_eq, bounds=bounds)
