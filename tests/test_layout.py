"""The package's architecture: layers point one way, the kernel's state stays inside ``envs``, shared names live
once, and the package's face (root exports, requirements, the registered goal env, pickled schedules)."""

import ast
import base64
import configparser
import json
import re
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from packaging.requirements import Requirement
from stable_baselines3 import PPO
from stable_baselines3.common import utils as sb3_utils

import sb3_microgrid
from sb3_microgrid import MicrogridVecEnv, load_scenario
from sb3_microgrid.envs import EPISODE_KEYS, MicrogridCore
from sb3_microgrid.envs.kpi import DAY_COLUMNS
from sb3_microgrid.evaluation import evaluate, split_dates
from sb3_microgrid.goal_env import MicrogridGoalEnv
from sb3_microgrid.hyperparams import load_hyperparams
from sb3_microgrid import schedules

PACKAGE = Path(sb3_microgrid.__file__).parent
ROOT = PACKAGE.parent
#: Module name -> source file, for every module of the package.
MODULES = {
    ".".join(path.relative_to(ROOT).with_suffix("").parts[: -1 if path.name == "__init__.py" else None]): path
    for path in PACKAGE.rglob("*.py")
}
UPPER = ("sb3_microgrid.baselines", "sb3_microgrid.evaluation", "sb3_microgrid.training")
#: Layer -> what neither it nor anything it imports may import.
FORBIDDEN = {
    "sb3_microgrid.envs": UPPER + ("sb3_microgrid.callbacks", "sb3_microgrid.deploy", "sb3_microgrid.forecasting", "sb3_microgrid.sites"),
    "sb3_microgrid.callbacks": UPPER,
}


def direct_imports(name: str) -> set[str]:
    """The package modules ``name`` imports anywhere in its source (also inside functions and
    ``TYPE_CHECKING``), with the parent packages whose ``__init__`` such an import runs."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}  # an imported name may be a submodule
    out = set()
    for module in found & set(MODULES):
        parts = module.split(".")
        out |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)}
    return out


def reachable(name: str) -> dict[str, str]:
    """Every package module ``name`` imports, directly or through others: module -> the module importing it."""
    seen, todo = {}, [name]
    while todo:
        current = todo.pop()
        for module in direct_imports(current):
            if module not in seen and module != name:
                seen[module] = current
                todo.append(module)
    return seen


def in_layer(module: str, layer: str) -> bool:
    return module == layer or module.startswith(layer + ".")


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_point_one_way(layer):
    assert any(in_layer(m, layer) for m in MODULES)
    bad = []
    for name in sorted(m for m in MODULES if in_layer(m, layer)):
        for module, via in reachable(name).items():
            if any(in_layer(module, upper) for upper in FORBIDDEN[layer]):
                bad.append(f"{name} reaches {module} (imported by {via})")
    assert not bad, "\n".join(bad)


def test_the_import_walk_sees_relative_and_lazy_imports():
    # the goal env sits above both layers it uses; a relative import from a subpackage resolves two levels up
    assert {"sb3_microgrid.baselines.lp", "sb3_microgrid.envs"} <= direct_imports("sb3_microgrid.goal_env")
    assert "sb3_microgrid.envs.kpi" in direct_imports("sb3_microgrid.callbacks.metrics")
    assert "sb3_microgrid.schedules" in direct_imports("sb3_microgrid.hyperparams")  # imported inside a function


def test_no_kernel_state_read_outside_envs():
    bad = []
    for name, path in MODULES.items():
        if in_layer(name, "sb3_microgrid.envs"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("kernel"):
                bad += [f"{name} imports {alias.name}" for alias in node.names if alias.name.startswith("S_")]
            if isinstance(node, ast.Attribute) and node.attr == "state":
                owner = node.value
                if (isinstance(owner, ast.Name) and owner.id == "core") or (isinstance(owner, ast.Attribute) and owner.attr == "core"):
                    bad.append(f"{name} line {node.lineno} reads core.state")
    assert not bad, "\n".join(bad)


# ---- the properties and names that replace those reads -------------------------------------------
def test_core_energy_properties_follow_the_state():
    scenario = load_scenario("campus")
    core = MicrogridCore(scenario, 2, "test")
    core.reset([np.random.default_rng(0), np.random.default_rng(1)], ["2024-01-02", "2024-06-03"])
    start = core.energy.copy()
    assert np.array_equal(core.start_energy, start) and np.array_equal(core.day_peak_kva, [0.0, 0.0])
    action = np.zeros((2, 1 + scenario.ev.n_ports))
    action[:, 0] = 1.0  # charge at full power: the battery fills and the grid covers it
    peak = np.zeros(2)
    for _ in range(3):
        info = core.step(action)[3]
        import_kw = info[:, sb3_microgrid.envs.STEP_KEYS.index("grid_import_kwh")] / scenario.step_hours
        peak = np.maximum(peak, import_kw / scenario.grid.power_factor)
    assert (core.energy > start).all() and np.array_equal(core.start_energy, start)
    assert core.day_peak_kva == pytest.approx(peak) and (peak > 0).all()


def test_start_days_once():
    core = MicrogridCore(load_scenario("campus"), 1, "test")
    days = core.start_days
    assert days[0] == "2024-01-01" and days[-1] == "2024-12-31" and len(days) == 366
    assert split_dates(load_scenario("campus"), "test") == days
    assert split_dates(load_scenario("campus"), "test", 3) == days[:3]


def test_kpi_names_shared_by_tables_and_logs():
    import sb3_microgrid.callbacks.metrics as metrics
    import sb3_microgrid.evaluation as evaluation

    assert tuple(DAY_COLUMNS) == EPISODE_KEYS
    assert evaluation.DAY_COLUMNS is DAY_COLUMNS and metrics.DAY_COLUMNS is DAY_COLUMNS
    result = evaluate("naive", days=1, reference=False)
    assert list(result.days.columns) == list(DAY_COLUMNS.values())


# ---- the package's face --------------------------------------------------------------------------
def test_algorithms_exported_from_the_root():
    from sb3_microgrid.algos import ALGOS

    ours = {cls for cls in ALGOS.values() if cls.__module__.startswith("sb3_microgrid.")}
    assert {cls.__name__ for cls in ours} >= {"TwinValuePPO", "PerSAC", "PerTD3", "DynaSAC"}
    for cls in ours:  # every algorithm of the registry that this package defines, as sb3_contrib exports its own
        assert cls.__name__ in sb3_microgrid.__all__ and getattr(sb3_microgrid, cls.__name__) is cls


def test_goal_env_registered_at_its_new_home():
    assert gym.spec("MicrogridGoal-v0").entry_point == "sb3_microgrid.goal_env:MicrogridGoalEnv"
    env = gym.make("MicrogridGoal-v0", budget_range=((-1.0, 1.0), (-1.0, 1.0)))
    assert type(env.unwrapped) is MicrogridGoalEnv
    assert set(env.reset(seed=0)[0]) == {"observation", "achieved_goal", "desired_goal"}


def test_requirements_range_torch_and_match_the_makefile():
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    requirements = {r.name: r for r in map(Requirement, filter(None, setup["options"]["install_requires"].splitlines()))}
    torch = requirements["torch"]
    assert not any(spec.operator == "==" for spec in torch.specifier), "a user's own torch must satisfy a range"
    assert torch.specifier.contains("2.8.0") and not torch.specifier.contains("3.0.0")  # SB3 2.9 needs torch >= 2.8
    pinned = re.search(r"pip install torch==([\w.]+)", (ROOT / "Makefile").read_text()).group(1)
    assert torch.specifier.contains(pinned), "the Makefile's torch must satisfy install_requires"
    # sb3-microgrid train writes TensorBoard logs and shows SB3's progress bar (tqdm + rich) by default
    assert {"tensorboard", "tqdm", "rich"} <= set(requirements)


# ---- schedules -------------------------------------------------------------------------------------
def test_linear_schedule_is_sb3s(tmp_path):
    assert issubclass(schedules.LinearSchedule, sb3_utils.LinearSchedule)
    assert schedules.LinearSchedule.__call__ is sb3_utils.LinearSchedule.__call__  # no second implementation
    conf = tmp_path / "lin.yml"
    conf.write_text("Microgrid-v0:\n  learning_rate: lin_3e-4\n")
    schedule = load_hyperparams(conf, PPO).algo_kwargs["learning_rate"]
    assert type(schedule) is sb3_utils.LinearSchedule  # new models pickle SB3's path
    assert [schedule(p) for p in (1.0, 0.5, 0.0)] == pytest.approx([3e-4, 1.5e-4, 0.0])  # rl_zoo3's lin_3e-4


#: ``learning_rate`` of a PPO zip saved before LinearSchedule was SB3's: ``sb3_microgrid.schedules.LinearSchedule``
#: with ``start=3e-4, end=0.0`` (the zip's ``data`` JSON, cloudpickled).
OLD_LINEAR_SCHEDULE = (
    "gAWVVgAAAAAAAACMF3NiM19taWNyb2dyaWQuc2NoZWR1bGVzlIwOTGluZWFyU2NoZWR1bGWUk5QpgZR9lCiMBXN0YXJ0lEc/M6kqMFUyYYwDZW5klEcAAAAAAAAAAHViLg=="
)


def test_models_saved_with_the_old_linear_schedule_load(tmp_path):
    assert b"sb3_microgrid.schedules" in base64.b64decode(OLD_LINEAR_SCHEDULE)
    env = MicrogridVecEnv(1, seed=0)
    PPO("MlpPolicy", env, n_steps=32, batch_size=32, device="cpu").save(tmp_path / "model.zip")
    with zipfile.ZipFile(tmp_path / "model.zip") as old, zipfile.ZipFile(tmp_path / "old.zip", "w") as new:
        for item in old.infolist():
            content = old.read(item)
            if item.filename == "data":
                data = json.loads(content)
                data["learning_rate"] = {":type:": "<class 'sb3_microgrid.schedules.LinearSchedule'>", ":serialized:": OLD_LINEAR_SCHEDULE}
                content = json.dumps(data).encode()
            new.writestr(item, content)
    model = PPO.load(tmp_path / "old.zip", env=env, device="cpu")  # builds the optimizer from lr_schedule(1)
    assert isinstance(model.learning_rate, sb3_utils.LinearSchedule)
    assert [model.lr_schedule(p) for p in (1.0, 0.5, 0.0)] == pytest.approx([3e-4, 1.5e-4, 0.0])  # the old values
    model.learn(32)

