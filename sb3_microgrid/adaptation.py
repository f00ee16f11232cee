"""One policy across sites, and its adaptation to a new one (docs/meta_learning.md).

- :data:`SITE_INTERFACE` / :func:`site_interface`: what makes observations and actions the same size on every
  site (the aggregate EV interface, the site context) and the reward of ``hyperparams/ppo.yml``.
- :func:`multi_site_env`: the training env of pooled multi-task training (PPO) and of :class:`~sb3_microgrid.reptile.Reptile`,
  refusing held-out sites.
- :func:`adapt`: ``sb3-microgrid adapt``, fine-tuning a pooled or meta-learned model on one site's training years
  (optionally keeping the weights that score best on its validation days) and writing a run folder that
  ``sb3-microgrid evaluate`` scores on that site with no option.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import VecEnv, VecMonitor, VecNormalize

from .algos import ALGOS, load
from .baselines.sb3_model import statistics_for, statistics_of_model
from .callbacks.checkpoint import MODEL, RUN_JSON, VECNORMALIZE, write_run_json
from .common.files import make_out_folder
from .common.json_values import plain
from .envs import MicrogridVecEnv
from .envs.multi_site import MultiSiteVecEnv
from .export import MANIFEST
from .forecasting import CORRECTOR_FILE
from .hyperparams import MAX_ENVS, constructor_parameters
from .reptile import Reptile
from .scenario import SEED_MAX, Scenario, ScenarioError, check_range, load_scenario, to_dict
from .sites import SITE_PRESETS, check_not_held_out, preset_site
from .validation import VALIDATION_JSON, ValidationCallback

#: Scenario changes that give every site the same observation and action (docs/environment.md, sections 3 and 4),
#: with the reward ``hyperparams/ppo.yml`` trains on (section 7; costs and evaluation are unchanged by it).
SITE_INTERFACE = {"ev__dispatch": "aggregate", "observation__site_context": True, "reward__exogenous_baseline": True}
#: Most fine-tuning steps ``adapt`` takes: a hundred times the benchmark's largest budget.
MAX_ADAPT_STEPS = 40_000_000
#: Env steps between validation scores when ``adapt`` selects on validation days and none is given: ValidationCallback's.
DEFAULT_EVAL_FREQ: int = inspect.signature(ValidationCallback).parameters["eval_freq"].default
#: Models ``adapt`` fine-tunes: their policy is PPO's actor-critic.
ADAPTABLE = (PPO, Reptile)
#: Files besides models (``*.zip``) that ``adapt``'s output folder may not hold: a run record (``run.json`` would be
#: replaced by one that the folder's models are then evaluated with), an export or forecast corrector (a folder holds
#: one controller), and the other files ``adapt`` writes (it would overwrite them).
TAKEN_FILES = (RUN_JSON, MANIFEST, CORRECTOR_FILE, VECNORMALIZE, VALIDATION_JSON)
#: PPO constructor arguments not copied from the model fine-tuned (:func:`fine_tuning_model`).
_NOT_COPIED = {"self", "policy", "env", "seed", "device", "verbose", "tensorboard_log", "_init_setup_model"}


def site_interface(scenario: Scenario) -> Scenario:
    """``scenario`` with :data:`SITE_INTERFACE`."""
    return scenario.replace(**SITE_INTERFACE)


def resolve_site(name: str) -> Scenario:
    """A site by name, with :data:`SITE_INTERFACE`: a key of :data:`~sb3_microgrid.sites.SITE_PRESETS` or a scenario YAML file.

    :raises ScenarioError: for anything else, listing the presets
    """
    if name in SITE_PRESETS:
        return site_interface(preset_site(name))
    if Path(name).suffix in (".yaml", ".yml") and Path(name).is_file():
        return site_interface(load_scenario(name))
    raise ScenarioError(f"unknown site {name!r}; allowed: a site preset ({', '.join(SITE_PRESETS)}) or a scenario YAML file")


def multi_site_env(sites: Sequence[Scenario], n_envs_per_site: int, seed: int, normalize: dict[str, Any] | None = None) -> VecEnv:
    """The training sites, with :data:`SITE_INTERFACE`, as one ``VecNormalize(VecMonitor(MultiSiteVecEnv))``.

    :param sites: training sites (e.g. :func:`~sb3_microgrid.sites.training_sites`)
    :param n_envs_per_site: microgrids of each site
    :param seed: microgrid ``i`` is seeded with ``seed + i``
    :param normalize: ``VecNormalize`` arguments (``gamma`` the algorithm's), ``None`` for no normalisation
    :raises HeldOutSiteError: if a held-out site is among ``sites``
    """
    check_not_held_out(sites)
    env: VecEnv = VecMonitor(MultiSiteVecEnv([site_interface(s) for s in sites], n_envs_per_site, seed=seed))
    return env if normalize is None else VecNormalize(env, **normalize)


def site_env(site: Scenario, n_envs: int, seed: int, statistics: str | Path | None, model: str | Path = "the model") -> VecEnv:
    """One site's training env for fine-tuning, normalised with a model's saved statistics (which keep updating).

    :param site: the site (with :data:`SITE_INTERFACE`)
    :param n_envs: microgrids
    :param seed: microgrid ``i`` is seeded with ``seed + i``
    :param statistics: the model's ``VecNormalize`` file, ``None`` if it was trained without
    :param model: the model's file, for the error about statistics that do not fit the site
    :raises ValueError: naming the files, if the statistics do not fit the site's observation
    """
    env: VecEnv = VecMonitor(MicrogridVecEnv(n_envs, scenario=site, seed=seed))
    if statistics is None:
        return env
    env = statistics_of_model(statistics, env, str(model))
    env.training = True
    return env


def check_adaptable(source: BaseAlgorithm, env: VecEnv) -> None:
    """Refuse a model :func:`fine_tuning_model` cannot fine-tune on ``env``.

    :param source: the model to fine-tune
    :param env: the site's env (its spaces and observation layout; any ``VecEnv`` of the site)
    :raises ValueError: if ``source`` is of another algorithm than :data:`ADAPTABLE`, or observes or acts otherwise
        than ``env``
    """
    if type(source) not in ADAPTABLE:
        raise ValueError(f"adapt fine-tunes {', '.join(c.__name__ for c in ADAPTABLE)} models, not {type(source).__name__}")
    trained = getattr(source.observation_space, "layout", None)
    if source.observation_space.shape != env.observation_space.shape or source.action_space.shape != env.action_space.shape or trained != env.get_attr("obs_layout", [0])[0]:
        raise ValueError(
            f"the model observes {source.observation_space.shape} and acts {source.action_space.shape}, the site "
            f"{env.observation_space.shape} and {env.action_space.shape} (or another observation layout): adapt fine-tunes "
            "models trained across sites (sb3_microgrid.adaptation.multi_site_env)"
        )


def fine_tuning_model(source: BaseAlgorithm, env: VecEnv, seed: int) -> PPO:
    """A new PPO on ``env`` with ``source``'s settings and weights and a fresh optimizer (as Reptile's inner loops start).

    :param source: a model of :data:`ADAPTABLE`
    :param env: the site's env (:func:`site_env`)
    :param seed: seed of the fine-tuning
    :raises ValueError: if ``source`` is of another algorithm, or observes or acts otherwise than ``env``
    """
    check_adaptable(source, env)
    kwargs = {p: getattr(source, p) if hasattr(source, p) else getattr(source, "_" + p) for p in constructor_parameters(PPO) - _NOT_COPIED}
    model = PPO(type(source.policy), env, seed=seed, device="cpu", **kwargs)
    model.policy.load_state_dict(source.policy.state_dict())
    return model


def check_out_folder(out: str | Path) -> None:
    """Refuse an output folder ``adapt`` cannot use, before any work (:func:`~sb3_microgrid.common.files.make_out_folder` then creates it).

    :param out: the run folder to write (need not exist)
    :raises ValueError: if ``out`` is a file or under one, or holds a model (any ``.zip``) or a file of
        :data:`TAKEN_FILES`
    """
    out = Path(out)
    try:
        nearest = next(folder for folder in (out, *out.parents) if folder.exists())  # the root exists
        if nearest == out and not out.is_dir():
            raise ValueError(f"{out} exists and is not a folder; choose another folder")
        if not nearest.is_dir():
            raise ValueError(f"{out} is under {nearest}, which is not a folder; choose another folder")
        taken = sorted(f.name for f in out.iterdir() if f.suffix.lower() == ".zip" or f.name in TAKEN_FILES) if out.is_dir() else []
    except OSError as err:  # a folder that cannot be read
        raise ValueError(f"cannot read {out}: {err.strerror or err}; choose another folder") from None
    if taken:
        raise ValueError(f"{out} already holds a model or another run's files ({', '.join(taken)}); choose another folder")


def save_run(out: str | Path, model: BaseAlgorithm, **record: Any) -> Path:
    """Write ``out/model.zip``, ``out/model_vecnormalize.pkl`` (if the model normalises) and ``out/run.json``.

    :param out: the run folder (created)
    :param model: a model of an algorithm of :data:`~sb3_microgrid.algos.ALGOS`
    :param record: further entries of ``run.json`` (``seed``, ``vec_env``, ``site``, ``scenario``, ...)
    :return: the model's path
    :raises ValueError: for a model of another class (nothing is written)
    """
    algo = next((name for name, cls in ALGOS.items() if type(model) is cls), None)
    if algo is None:  # run.json must name the class the zip loads with (a zip does not record it)
        raise ValueError(f"save_run writes models of the algorithms of sb3_microgrid.algos.ALGOS, not {type(model).__name__}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / MODEL)
    files = [MODEL]
    normalizer = model.get_vec_normalize_env()
    if normalizer is not None:
        normalizer.save(str(out / VECNORMALIZE))
        files.append(VECNORMALIZE)
    write_run_json(out, algo, model.num_timesteps, files, settings=record)
    return out / MODEL


def adapt(
    model: str | Path,
    site: str,
    timesteps: int,
    out: str | Path,
    seed: int = 0,
    n_envs: int = 8,
    progress_bar: bool = False,
    eval_days: int = 0,
    eval_freq: int | None = None,
) -> PPO:
    """Fine-tune a pooled or meta-learned model on a site's training years (``sb3-microgrid adapt``).

    Writes ``out/model.zip``, its ``VecNormalize`` statistics and ``out/run.json``, which records the site's scenario
    for ``sb3-microgrid evaluate``. PPO trains in whole rollouts, so it may take up to one rollout more than
    ``timesteps`` (``run.json`` has the count); ``timesteps = 0`` writes the model as it is, with the site: zero-shot.

    With ``eval_days``, a :class:`~sb3_microgrid.validation.ValidationCallback` scores the policy on the site's first
    ``eval_days`` validation days before training, after the first update at least ``eval_freq`` steps after the
    previous score, and at the end; the weights and ``VecNormalize`` statistics of the best score are written, not the
    last ones. ``run.json`` then has ``"validation": {"days", "eval_freq", "selected_steps", "selected_gap_closed" (null where undefined), "selected_cost_per_day",
    "scores"}`` and ``out/validation.json`` every score (:class:`~sb3_microgrid.validation.ValidationCallback`'s file,
    with the best weights beside it). With ``timesteps = 0`` the model
    is scored once and written unchanged.

    :param model: the model's ``.zip`` (PPO or Reptile; statistics found beside it)
    :param site: a site preset's name or a scenario YAML file (:func:`resolve_site`)
    :param timesteps: fine-tuning env steps, ``0 <= timesteps <=`` :data:`MAX_ADAPT_STEPS`
    :param out: run folder to write; must not hold a model (any ``.zip``) or a file of :data:`TAKEN_FILES` yet
    :param seed: seed of the envs and of PPO, in ``[0,`` :data:`~sb3_microgrid.scenario.SEED_MAX` ``]``
    :param n_envs: microgrids stepped together (``hyperparams/ppo.yml``: 8), in ``[1,`` :data:`~sb3_microgrid.hyperparams.MAX_ENVS` ``]``
    :param progress_bar: show SB3's progress bar
    :param eval_days: select on the site's first ``eval_days`` validation days, in ``[1,`` days of the validation
        split ``]``; 0 (the default): no selection, the last weights are written
    :param eval_freq: env steps between validation scores, in ``[1,`` :data:`MAX_ADAPT_STEPS` ``]`` (default
        :data:`DEFAULT_EVAL_FREQ`); only with ``eval_days``
    :raises ScenarioError: for an unknown site
    :raises ValueError: for a step, env, seed, day or frequency count out of range, an output path that is a file, is
        under one, holds a model or another run's files (:func:`check_out_folder`) or cannot be written (checked before
        training), a model that cannot be adapted or whose normalisation statistics are missing or do not fit the site
    :raises FileNotFoundError: if ``model`` does not exist
    """
    scenario = resolve_site(site)
    for name, value, low, high in (("timesteps", timesteps, 0, MAX_ADAPT_STEPS), ("n_envs", n_envs, 1, MAX_ENVS), ("seed", seed, 0, SEED_MAX)):
        check_range(name, value, low, high, integer=True)
    if eval_days == 0 and eval_freq is not None:
        raise ValueError(f"eval_freq ({eval_freq!r}) applies only when selecting on validation days: give eval_days >= 1")
    validation_days = 0 if eval_days == 0 else len(MicrogridVecEnv(1, scenario=scenario, split="validation").core.start_days)
    check_range("eval_days", eval_days, 0, validation_days, integer=True)
    if eval_days:
        eval_freq = DEFAULT_EVAL_FREQ if eval_freq is None else eval_freq
        check_range("eval_freq", eval_freq, 1, MAX_ADAPT_STEPS, integer=True)
    check_out_folder(out)
    if not Path(model).is_file():
        raise FileNotFoundError(f"no model file at {model}")
    statistics, normalised = statistics_for(model)
    if statistics is None and normalised:
        raise ValueError(f"{model} was trained on normalised observations but no VecNormalize statistics were found beside it")
    # loaded to train on: a schedule that names something refused is an error, not an inert stand-in
    source = load(model, prediction=False)
    check_adaptable(source, MicrogridVecEnv(1, scenario=scenario))  # before the statistics meet the site's observation
    # another run's statistics beside the model are refused here, naming the file, as evaluate does
    env = site_env(scenario, n_envs, seed, statistics, model)
    make_out_folder(out)
    tuned = fine_tuning_model(source, env, seed)
    validation = ValidationCallback(days=eval_days, eval_freq=eval_freq, log_path=str(out)) if eval_days else None
    if timesteps > 0:
        tuned.learn(timesteps, callback=validation, progress_bar=progress_bar)
    elif validation is not None:
        _score_untrained(tuned, validation)
    record: dict[str, Any] = {"seed": seed, "vec_env": "microgrid", "site": scenario.name, "scenario": to_dict(scenario), "source_model": str(model)}
    if validation is not None:
        assert validation.best is not None
        record["validation"] = {
            "days": eval_days, "eval_freq": eval_freq, "selected_steps": int(validation.best["steps"]),
            "selected_gap_closed": plain(validation.best["gap_closed"]), "selected_cost_per_day": validation.best["cost_per_day"],
            "scores": len(validation.history),
        }  # fmt: skip
    save_run(out, tuned, **record)
    return tuned


def _score_untrained(model: PPO, validation: ValidationCallback) -> None:
    """Score ``model`` once, as :class:`ValidationCallback` does before training, without ``learn``: its first reset
    would count the new episodes' observations in the statistics a zero-shot model is written with."""
    model.set_logger(Logger(folder=None, output_formats=[]))
    model._custom_logger = False  # a later learn() configures its logger as usual
    validation.init_callback(model)
    validation.on_training_start({}, {})
    validation.on_training_end()
