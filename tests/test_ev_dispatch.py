"""The aggregate EV interface (``ev.dispatch: aggregate``) and the site context: sizes, least-laxity dispatch,
safety, randomness shared with the ports twin, baselines on the twin, training configuration."""

import json
import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from sb3_microgrid.baselines import NaiveController, OnnxController, RuleController
from sb3_microgrid.deploy import ObservationBuilder, SiteController, read_state, supervise
from sb3_microgrid.deploy.checks import Checker, site_ranges
from sb3_microgrid.deploy.env_site import EnvSite
from sb3_microgrid.envs import STEP_KEYS, MicrogridEnv, MicrogridVecEnv
from sb3_microgrid.envs.dispatch import FLEET_FEATURES, fleet_features, fleet_requests
from sb3_microgrid.envs.layout import SITE_CONTEXT
from sb3_microgrid.envs.supervisor import port_range
from sb3_microgrid.evaluation import evaluate
from sb3_microgrid.evaluation import run_day as evaluation_day
from sb3_microgrid.export import MANIFEST
from sb3_microgrid.export.onnx_export import export_model
from sb3_microgrid.hyperparams import load_hyperparams
from sb3_microgrid.scenario import ScenarioError, load_scenario
from sb3_microgrid.training import make_env

AGGREGATE = {"base": "campus", "ev": {"dispatch": "aggregate"}, "observation": {"site_context": True}}
DAY = "2022-03-08"


def aggregate(**ev) -> dict:
    return {**AGGREGATE, "ev": {"dispatch": "aggregate", **ev}}


def fleet_action(share: float) -> np.ndarray:
    """``[battery idle, ev]`` asking for ``share`` of what the cars can take (without V2G)."""
    return np.array([0.0, 2.0 * share - 1.0])


def run_day(env: MicrogridEnv, action, day: str = DAY, seed: int = 0) -> list[dict]:
    env.reset(seed=seed, options={"day": day})
    infos, done = [], False
    while not done:
        _, _, done, _, info = env.step(action)
        infos.append(info)
    return infos


@pytest.mark.parametrize("site_context", [False, True])
def test_spaces_keep_their_size_whatever_the_ports(site_context):
    envs = [MicrogridEnv({**aggregate(n_ports=n), "observation": {"site_context": site_context}}) for n in (0, 4, 12)]
    assert {env.action_space.shape for env in envs} == {(2,)}
    assert len({env.observation_space.shape for env in envs}) == 1
    layouts = {env.obs_layout for env in envs}
    assert len(layouts) == 1
    names = layouts.pop().static_names
    assert all(name in names for name in FLEET_FEATURES) and not any(name.startswith("ev0_") for name in names)
    assert all(name in names for name in SITE_CONTEXT) == site_context
    for env in envs:
        obs, _ = env.reset(seed=0)
        assert env.observation_space.contains(obs)
        env.step(env.action_space.sample())
    assert [env.action_layout.names for env in envs] == [("battery", "ev")] * 3


def test_unknown_dispatch_is_refused_with_its_field():
    with pytest.raises(ScenarioError, match=r"ev\.dispatch = 'fleet'; allowed: 'ports', 'aggregate'"):
        load_scenario({"ev": {"dispatch": "fleet"}})
    with pytest.raises(ScenarioError, match="observation.site_context must be true or false"):
        load_scenario({"observation": {"site_context": "yes"}})


def _three_cars(env: MicrogridEnv, leave_in: tuple[int, ...], delivered_kwh: float = 0.0) -> None:
    """After a reset: cars of 20 kWh wanted at ports 0, 1, 2 leaving in ``leave_in`` steps; every other port free."""
    core = env.core
    for array in (core.connected, core.remaining, core.delivered, core.deadline):
        array[:] = 0
    for p, steps in enumerate(leave_in):
        core.connected[0, p], core.remaining[0, p], core.delivered[0, p] = 1.0, 20.0, delivered_kwh
        core.deadline[0, p] = core.t + steps


def _port_kw(env: MicrogridEnv, action: np.ndarray) -> np.ndarray:
    """Step ``action``; the bus-side power each port got (kW)."""
    ev, core = env.scenario.ev, env.core
    before = core.delivered[0].copy()
    env.step(action)
    stored = core.delivered[0] - before
    return np.where(stored >= 0, stored / ev.charger_efficiency, stored * ev.charger_efficiency) / env.scenario.step_hours


def test_least_laxity_first():
    """Laxities about 8.1, 0.1 and 3.1 h: a quarter of the 33 kW the three cars can take goes to the tightest car
    alone, half fills it and gives the rest to the next tightest, the loosest gets nothing."""
    env = MicrogridEnv(aggregate())
    env.reset(seed=0, options={"day": DAY})
    _three_cars(env, (10, 2, 5))
    np.testing.assert_allclose(_port_kw(env, fleet_action(0.25))[:3], [0.0, 8.25, 0.0], atol=1e-9)
    env.reset(seed=0, options={"day": DAY})
    _three_cars(env, (10, 2, 5))
    np.testing.assert_allclose(_port_kw(env, fleet_action(0.5))[:3], [0.0, 11.0, 5.5], atol=1e-9)


def test_v2g_takes_from_the_most_laxity_first():
    env = MicrogridEnv(aggregate(v2g=True))
    env.reset(seed=0, options={"day": DAY})
    _three_cars(env, (10, 2, 5), delivered_kwh=5.0)  # each can give back 5 kWh x 0.95 = 4.75 kW in the hour
    np.testing.assert_allclose(_port_kw(env, np.array([0.0, -0.5]))[:3], [-4.75, 0.0, -2.375], atol=1e-9)


def test_fleet_requests_on_hand_made_bounds():
    lo, hi = np.array([0.0, -2.0, -4.0, 0.0]), np.array([3.0, 5.0, 0.0, 7.0])
    laxity = np.array([2.0, 1.0, 9.0, 1.0])  # a tie between ports 1 and 3: the lower port first
    want = np.empty(4)
    assert not fleet_requests(0.4, lo, hi, laxity, True, want)
    np.testing.assert_allclose(want, [0.0, 5.0, 0.0, 1.0])  # 0.4 x 15 kW
    fleet_requests(-0.5, lo, hi, laxity, True, want)
    np.testing.assert_allclose(want, [0.0, 0.0, -3.0, 0.0])  # 0.5 x 6 kW, most laxity first
    assert fleet_requests(np.nan, lo, hi, laxity, False, want)  # NaN is 0: half of what the cars can take
    np.testing.assert_allclose(want, [0.0, 5.0, 0.0, 2.5])
    assert fleet_requests(3.0, lo, hi, laxity, False, want)
    np.testing.assert_array_equal(want, hi)


def test_fleet_features_hold_no_negative_zero():
    """Without V2G every lower bound is 0: ev_max_discharge reads 0.0, not -0.0 (max(-0.0, 0.0) is -0.0)."""
    out = np.empty(len(FLEET_FEATURES))
    for n_ports in (0, 3):
        free = np.zeros(n_ports)
        fleet_features(free, free, free, free, free, 11.0, 0.95, 12.0, out)
        assert not np.signbit(out).any(), dict(zip(FLEET_FEATURES, out))
    env = MicrogridEnv(aggregate())
    obs, _ = env.reset(seed=0, options={"day": DAY})
    index = env.obs_layout.static_names.index("ev_max_discharge")
    assert obs[index] == 0.0 and not np.signbit(obs[index])


def test_full_fleet_entry_is_the_sum_of_the_upper_bounds():
    env = MicrogridEnv(aggregate())
    ev, dt = env.scenario.ev, env.scenario.step_hours
    env.reset(seed=3, options={"day": DAY})
    core, charged = env.core, 0
    done = False
    while not done:
        bounds = [port_range(c > 0, r, d, ev.port_power_kw, ev.charger_efficiency, dt, ev.v2g)[1] for c, r, d in zip(core.connected[0], core.remaining[0], core.delivered[0])]
        _, _, done, _, info = env.step(fleet_action(1.0))
        assert info["ev_kwh"] == pytest.approx(sum(bounds) * dt, rel=1e-12, abs=1e-12)
        charged += sum(bounds) > 0
    assert charged >= 5


def test_full_fleet_entry_is_naive_with_no_violation_and_nothing_unmet():
    """``[0, +1]`` is every car at its bound, as naive's full port requests end up: the same day, kWh for kWh, with
    no violation and no unmet energy; only naive's clipped requests count as interventions."""
    agg, ports = MicrogridEnv(aggregate()), MicrogridEnv("campus")
    for i, day in enumerate(("2022-01-10", "2022-03-08", "2022-07-19")):
        mine = run_day(agg, fleet_action(1.0), day, seed=i)
        naive = NaiveController()
        ports.reset(seed=i, options={"day": day})
        naive.reset(ports, None)
        theirs = run_day(ports, naive.act(None), day, seed=i)
        for a, b in zip(mine, theirs):
            assert {k: a[k] for k in STEP_KEYS if k != "safety_interventions"} == {k: b[k] for k in STEP_KEYS if k != "safety_interventions"}
        totals = mine[-1]["episode_metrics"]
        assert totals["safety_violations"] == 0 and totals["unmet_ev_kwh"] < 1e-9 and totals["safety_interventions"] == 0


def test_episode_randomness_does_not_depend_on_the_interface():
    agg, ports = MicrogridEnv(AGGREGATE), MicrogridEnv("campus")
    for seed in (0, 1):
        obs_a, info_a = agg.reset(seed=seed)
        obs_p, info_p = ports.reset(seed=seed)
        assert info_a == info_p
        ea, ep = agg.core.episode, ports.core.episode
        for name in ("window_error", "window_mean", "arrival_energy", "arrival_deadline", "import_price", "load_kw"):
            np.testing.assert_array_equal(getattr(ea, name), getattr(ep, name))
        np.testing.assert_array_equal(obs_a[agg.obs_layout.window], obs_p[ports.obs_layout.window])
    assert agg.with_dispatch("ports").obs_layout != agg.obs_layout and agg.with_dispatch("aggregate") is agg


def test_checkers_pass():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(MicrogridEnv(AGGREGATE), skip_render_check=True)
        sb3_check_env(MicrogridEnv(aggregate(v2g=True, n_ports=0)), warn=True)
    unexpected = [str(w.message) for w in caught if "Box observation space" not in str(w.message) or "infinity" not in str(w.message)]
    assert unexpected == []


def test_vec_env_equals_single_envs():
    venv = MicrogridVecEnv(2, scenario=AGGREGATE, seed=4)
    singles = [MicrogridEnv(AGGREGATE) for _ in range(2)]
    obs = venv.reset()
    np.testing.assert_array_equal(obs, [env.reset(seed=4 + i)[0] for i, env in enumerate(singles)])
    rng = np.random.default_rng(0)
    for _ in range(6):
        action = rng.uniform(-1, 1, (2, 2))
        obs, reward, _, _ = venv.step(action)
        steps = [env.step(a) for env, a in zip(singles, action)]
        np.testing.assert_array_equal(obs, [s[0] for s in steps])
        np.testing.assert_array_equal(reward, np.float32([s[1] for s in steps]))


def test_a_site_ten_times_smaller_looks_the_same():
    """The clinic is the campus at a tenth of every size (load, battery, PV, wind, limits, charger power): the same
    site context; without chargers (the sessions' energies do not scale with the ports), the same observations step
    after step."""
    tenth = {
        "data": {"load_mean_kw": 31.6}, "pv": {"capacity_kwp": 40.0}, "wind": {"rated_kw": 10.0},
        "battery": {"capacity_kwh": 150.0, "charge_power_kw": 50.0, "discharge_power_kw": 50.0},
        "grid": {"import_limit_kw": 120.0, "export_limit_kw": 30.0},
    }  # fmt: skip
    campus = MicrogridEnv(AGGREGATE)
    np.testing.assert_allclose(MicrogridEnv({**aggregate(port_power_kw=1.1), **tenth}).core.context, campus.core.context, rtol=1e-9)
    big, clinic = MicrogridEnv(aggregate(n_ports=0)), MicrogridEnv({**aggregate(n_ports=0), **tenth})
    a, _ = big.reset(seed=0, options={"day": DAY})
    b, _ = clinic.reset(seed=0, options={"day": DAY})
    for action in np.random.default_rng(1).uniform(-1, 1, (12, 2)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        a, b = big.step(action)[0], clinic.step(action)[0]
    context = dict(zip(SITE_CONTEXT, campus.core.context))
    assert context["site_battery_h"] == pytest.approx(1500 * 0.8 / campus.core.site.mean_load_kw)
    assert context["site_ev_power"] == pytest.approx(12 * 11.0 / campus.core.site.mean_load_kw)
    assert context["site_tod"] == 0.0 and context["site_demand_charge"] == 1.0 and context["site_v2g"] == 0.0


def test_no_chargers_and_no_battery_power_runs_safely():
    env = MicrogridEnv({
        **aggregate(n_ports=0),
        "battery": {"charge_power_kw": 0.0, "discharge_power_kw": 0.0, "self_discharge_per_hour": 0.0},
    })  # fmt: skip
    rng = np.random.default_rng(0)
    infos = run_day(env, rng.uniform(-1, 1, 2))
    assert infos[-1]["episode_metrics"]["safety_violations"] == 0
    assert all(info["battery_kwh"] == 0.0 and info["ev_kwh"] == 0.0 for info in infos)


def test_baselines_refuse_an_aggregate_env_and_are_scored_on_its_ports_twin():
    env = MicrogridEnv(AGGREGATE)
    obs, _ = env.reset(seed=0)
    with pytest.raises(ValueError, match=r"acts per EV port.*with_dispatch\('ports'\)"):
        RuleController().reset(env, obs)
    for name in ("naive", "rule"):
        on_aggregate = evaluate(name, scenario=AGGREGATE, days=2, reference=False).days
        on_ports = evaluate(name, scenario="campus", days=2, reference=False).days
        assert on_aggregate.equals(on_ports)


class FullFleet:
    """A controller of the aggregate interface (no ``ev_dispatch``): battery idle, every car at its bound."""

    name = "full fleet"

    def reset(self, env, obs):
        assert env.action_space.shape == (2,)

    def act(self, obs):
        return fleet_action(1.0)


def test_gap_closed_of_an_aggregate_policy_uses_naive_and_optimal_of_the_same_days():
    """``FullFleet`` runs on the aggregate env, naive and optimal on its ports twin with the same days and noise;
    it is naive's operation, so it closes none of the gap."""
    result = evaluate(FullFleet(), scenario=AGGREGATE, days=2)
    naive = evaluate("naive", scenario="campus", days=2, reference=False)
    assert result.summary["cost_naive_per_day"] == naive.summary["cost_per_day"] == result.summary["cost_per_day"]
    assert result.summary["gap_closed"] == 0.0 and result.summary["cost_optimal_per_day"] < result.summary["cost_per_day"]


def test_hyperparameter_file_selects_the_aggregate_interface(tmp_path):
    conf = tmp_path / "ppo.yml"
    conf.write_text(
        "Microgrid-v0:\n  n_envs: 2\n  n_timesteps: 100\n  policy: MlpPolicy\n"
        "  env_kwargs:\n    scenario: {base: campus, ev: {dispatch: aggregate}, observation: {site_context: true}}\n"
    )
    venv = make_env(load_hyperparams(conf, PPO), seed=0)
    assert venv.action_space.shape == (2,) and venv.get_attr("scenario")[0].ev.dispatch == "aggregate"
    assert venv.reset().shape == (2, MicrogridEnv(AGGREGATE).observation_space.shape[0])
    assert isinstance(venv.unwrapped, MicrogridVecEnv)


def test_action_layout_describes_the_fleet_entry():
    layout = MicrogridEnv(aggregate(v2g=True)).action_layout
    entries = layout.to_dict()["entries"]
    assert [e["name"] for e in entries] == ["battery", "ev"] and layout.dispatch == "aggregate"
    assert entries[1]["kw"] == [-132.0, 0.0, 132.0] and "least laxity" in entries[1]["meaning"]
    assert MicrogridEnv(aggregate()).action_layout.to_dict()["entries"][1]["kw"] == [0.0, 66.0, 132.0]


#: The site controller's variant: V2G at four chargers, 30-minute steps, another window, the site context.
SITE = {**aggregate(n_ports=4, v2g=True), "step_hours": 0.5, "forecast": {"history_steps": 5, "forecast_steps": 7}}


def test_site_controller_builds_the_fleet_observation_and_dispatches_as_the_env():
    """Every step of two test days under random fleet actions (NaN and inf included): measurements as a site reports
    them give the env's observation (fleet features and site context), and the site's supervisor the env's step."""
    env = MicrogridEnv(SITE, split="test")
    window_scale = dict(zip(env.obs_layout.window_names, env.core.site.window_scale.tolist()))
    builder = ObservationBuilder(env.obs_layout, env.scenario, window_scale, dict(zip(SITE_CONTEXT, env.core.context.tolist())))
    site, rng, dt_h, cars = EnvSite(env), np.random.default_rng(2), env.scenario.step_hours, 0
    for seed, day in enumerate(("2024-02-03", "2024-06-20")):
        obs, _ = env.reset(seed=seed, options={"day": day})
        done = False
        while not done:
            checker = Checker(site_ranges(env.scenario))
            state = read_state(site.measurements(obs), env.scenario, env.obs_layout, checker)
            assert checker.issues == []
            np.testing.assert_allclose(builder.build(state), obs, rtol=1e-6, atol=1e-6, err_msg=f"{day} step {env.core.t}")
            action = rng.uniform(-1.5, 1.5, 2)
            action[rng.random(2) < 0.05] = np.nan
            action[rng.random(2) < 0.05] = np.inf
            expected = supervise(action, state, env.scenario)
            obs, _, done, _, info = env.step(action)
            assert info["ev_kwh"] / dt_h == pytest.approx(expected.charger_kw.sum(), rel=1e-9, abs=1e-9)
            assert info["battery_kwh"] / dt_h == pytest.approx(expected.battery_kw, rel=1e-9, abs=1e-9)
            assert info["safety_interventions"] == float(expected.intervened)
            cars += len(state.evs)
    assert cars > 0


@pytest.fixture(scope="module")
def aggregate_export(tmp_path_factory):
    """A PPO of 128 steps on the aggregate campus with the site context, exported."""
    folder = tmp_path_factory.mktemp("aggregate_export")
    model = PPO("MlpPolicy", MicrogridVecEnv(1, scenario=AGGREGATE, seed=0), n_steps=64, batch_size=64, seed=0, device="cpu", policy_kwargs={"net_arch": [16]})
    model.learn(128).save(folder / "model.zip")
    export_model(folder / "model.zip", folder / "policy", scenario=AGGREGATE)
    return folder / "policy"


def test_export_and_site_controller_run_an_aggregate_policy(aggregate_export):
    """The manifest describes the fleet entry and records the site context; a test day decided by the site
    controller from measurements scores as the export evaluated in-process, with no violation."""
    manifest = json.loads((aggregate_export / MANIFEST).read_text())
    assert [e["name"] for e in manifest["action"]["env"]["entries"]] == ["battery", "ev"] and manifest["action"]["env"]["dispatch"] == "aggregate"
    env = MicrogridEnv(AGGREGATE, split="test")
    assert manifest["observation"]["site_context"] == pytest.approx(dict(zip(SITE_CONTEXT, env.core.context)))
    day, seed = "2024-03-12", 3
    controller = SiteController.from_export(aggregate_export, clock=None)
    metrics, decisions = EnvSite(env).play(day, seed, controller.decide)
    expected, _ = evaluation_day(OnnxController(aggregate_export), MicrogridEnv(AGGREGATE, split="test"), day, seed)
    assert not any(d.fallback for d in decisions) and metrics["safety_violations"] == 0
    assert metrics == pytest.approx(expected, rel=1e-9, abs=1e-9)
    # A failing policy gets the fallback of the fleet interface: battery idle, every car at its bound.
    broken = SiteController(Broken(controller.manifest), controller.scenario, clock=None)
    obs, _ = env.reset(seed=seed, options={"day": day})
    decision = broken.decide(EnvSite(env).measurements(obs))
    assert decision.fallback and decision.action == [0.0, 1.0]


class Broken:
    """A policy with an export's manifest that fails."""

    def __init__(self, manifest: dict) -> None:
        self.manifest = manifest

    def act(self, obs):
        raise RuntimeError("broken")
