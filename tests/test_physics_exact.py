"""Single steps and days checked exactly against the formulas of docs/environment.md, and the disk
cache of the compiled step keyed on every source compiled into it."""

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numba.core.dispatcher import Dispatcher

from sb3_microgrid.envs import MicrogridEnv, kernel

N_PORTS = 12  # campus


def idle() -> np.ndarray:
    """Battery and every port at 0 kW (without V2G a port's -1 is 0 kW)."""
    return np.r_[0.0, -np.ones(N_PORTS)]


@pytest.mark.parametrize("step_hours", [1.0, 0.25])
def test_an_idle_step_loses_exactly_the_self_discharge(step_hours):
    s = 0.004
    env = MicrogridEnv({"step_hours": step_hours, "battery": {"self_discharge_per_hour": s}, "difficulty": {"ev_count": 0}})
    env.reset(seed=0)
    energy = env.core.energy[0]
    _, _, _, _, info = env.step(idle())
    assert env.core.energy[0] == pytest.approx(energy * (1 - s * step_hours), rel=1e-12)
    assert info["battery_kwh"] == 0.0 and info["safety_interventions"] == 0


@pytest.mark.parametrize("step_hours", [1.0, 0.25])
@pytest.mark.parametrize("soc", [0.3, 0.8])
def test_an_idle_day_ages_the_battery_by_the_calendar_formula(soc, step_hours):
    """No cycling, constant SoC: one day adds ``k_time * 86400 s * f_sigma(soc)`` of stress, and
    ``SoH = 1 - L(stress)`` (Xu et al., as documented in envs/degradation.py), written out here."""
    battery = {"self_discharge_per_hour": 0.0, "initial_soc": soc, "initial_soh": 1.0}
    env = MicrogridEnv({"step_hours": step_hours, "battery": battery, "difficulty": {"ev_count": 0}})
    env.reset(seed=0)
    for _ in range(env.scenario.steps_per_day):
        _, _, _, _, info = env.step(idle())
        assert info["battery_kwh"] == 0.0
    d = env.scenario.battery.degradation
    stress = d.k_time * 86400.0 * math.exp(d.k_sigma * (soc - d.sigma_ref))
    loss = 1.0 - d.alpha_sei * math.exp(-d.beta_sei * stress) - (1.0 - d.alpha_sei) * math.exp(-stress)
    assert 1.0 - env.core.soh[0] == pytest.approx(loss, rel=1e-9)
    assert env.core.capacity[0] == pytest.approx(env.scenario.battery.capacity_kwh * (1.0 - loss), rel=1e-12)


def test_an_ev_leaves_at_its_departure_step_with_its_unmet_energy_booked():
    """One car, never charged: connected from its arrival step up to (not including) its departure
    step, and its whole request booked as unmet, and priced, in the step before it leaves."""
    env = MicrogridEnv({"difficulty": {"ev_count": 1}}, split="test")
    env.reset(seed=0, options={"day": "2024-01-09"})
    ep = env.core.episode
    (arrival,), (port,) = np.nonzero(ep.arrival_energy[0] > 0)
    leave, energy = int(ep.arrival_deadline[0, arrival, port]), float(ep.arrival_energy[0, arrival, port])
    assert 0 < arrival < leave < ep.n_steps  # it arrives and leaves inside the episode
    penalty = env.scenario.ev.unmet_penalty_inr_per_kwh
    for t in range(ep.n_steps):
        _, _, _, _, info = env.step(idle())
        # after step t the core is at the start of step t + 1
        assert env.core.connected[0, port] == float(arrival <= t + 1 < leave), t
        booked = energy if t == leave - 1 else 0.0
        assert info["unmet_ev_kwh"] == pytest.approx(booked, rel=1e-12), t
        assert info["cost_ev"] == pytest.approx(booked * penalty, rel=1e-12), t
    assert info["episode_metrics"]["unmet_ev_kwh"] == pytest.approx(energy, rel=1e-12)


@pytest.mark.parametrize("v2g,port_action", [(False, 1.0), (True, 1.0), (True, -1.0)])
def test_requests_at_empty_ports_are_not_interventions(v2g, port_action):
    env = MicrogridEnv({"ev": {"v2g": v2g}, "difficulty": {"ev_count": 0}})
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.r_[0.0, np.full(N_PORTS, port_action)])
    assert info["ev_kwh"] == 0.0 and info["battery_kwh"] == 0.0
    assert info["safety_interventions"] == 0


def test_step_cache_is_stamped_with_every_source_compiled_into_it():
    """numba would stamp the step's cache with kernel.py alone: a changed supervisor.py,
    degradation.py or dispatch.py must change the stamp too, or the old compiled step is loaded."""
    called = {Path(sys.modules[f.py_func.__module__].__file__) for f in vars(kernel).values() if isinstance(f, Dispatcher)}
    assert called <= set(kernel.STEP_SOURCES)
    assert {p.name for p in kernel.STEP_SOURCES} == {"kernel.py", "supervisor.py", "degradation.py", "dispatch.py"}
    for compiled in (kernel.step, kernel.observe):  # the observation calls the fleet features of dispatch.py
        assert compiled._cache._cache_file._source_stamp == kernel.sources_stamp(kernel.STEP_SOURCES)


def test_sources_stamp_changes_with_any_source(tmp_path):
    copies = []
    for path in kernel.STEP_SOURCES:
        copies.append(tmp_path / path.name)
        shutil.copy(path, copies[-1])
    stamp = kernel.sources_stamp(tuple(copies))
    assert stamp == kernel.sources_stamp(kernel.STEP_SOURCES)
    for copy in copies:
        text = copy.read_text()
        copy.write_text(text + "\n")
        assert kernel.sources_stamp(tuple(copies)) != stamp, copy.name
        copy.write_text(text)


STALE_PROBE = """
import numpy as np
import sb3_microgrid
from sb3_microgrid import MicrogridEnv
env = MicrogridEnv({"difficulty": {"ev_count": 0}})
env.reset(seed=0)
print(sb3_microgrid.__file__, env.step(np.r_[0.0, -np.ones(12)])[4]["safety_interventions"])
"""


@pytest.mark.slow
def test_an_edited_supervisor_is_compiled_into_the_step(tmp_path):
    """End to end with numba's real disk cache: a copy of the package compiles and caches its step,
    then only supervisor.py changes (every step now counts an intervention); the next process must
    run the new supervisor, not the cached step."""
    package = Path(kernel.__file__).parents[1]
    shutil.copytree(package, tmp_path / package.name, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "NUMBA_CACHE_DIR": str(tmp_path / "numba"), "OMP_NUM_THREADS": "1"}

    def interventions() -> str:
        out = subprocess.run([sys.executable, "-c", STALE_PROBE], cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=600)
        path, count = out.stdout.split()
        assert Path(path).is_relative_to(tmp_path)  # the copy, not the installed package
        return count

    assert interventions() == "0.0"
    supervisor = tmp_path / package.name / "envs" / "supervisor.py"
    old = "    return bat, curtailed, unserved, intervened\n"
    assert old in supervisor.read_text()
    supervisor.write_text(supervisor.read_text().replace(old, "    return bat, curtailed, unserved, True\n"))
    assert interventions() == "1.0"
