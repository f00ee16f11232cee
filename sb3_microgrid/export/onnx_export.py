"""``sb3-microgrid export``: a saved model as an ONNX graph, its manifest and its scenario (``docs/deploy.md``).

The graph is ``model.predict(obs, deterministic=True)`` on raw observations: the ``VecNormalize``
observation statistics the model acts with (:func:`~sb3_microgrid.baselines.sb3_model.statistics_for`,
as :class:`~sb3_microgrid.baselines.SB3Controller` finds them) are folded in, in float64 as
``VecNormalize.normalize_obs`` computes them, and the policy's deterministic action is unscaled (a
squashed actor: SAC, TQC, CrossQ, ...) or clipped to the action space (PPO-style Gaussian policies, ARS,
TD3), as ``predict`` does. It traces the policy's own ``_predict``, so every policy of the registry
(:data:`~sb3_microgrid.algos.ALGOS`) exports without a case of its own; ``RecurrentPPO`` (``ppo_lstm``)
exports with its LSTM state as extra inputs and outputs.
"""

from __future__ import annotations

import json
import platform
import tempfile
import warnings
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.vec_env import VecNormalize

from ..algos import ALGOS, load
from ..baselines.sb3_model import load_statistics, recorded_scenario, run_env_wrappers, statistics_for
from ..common.json_values import refuse_constant
from ..envs import MicrogridEnv
from ..evaluation import model_sha256
from ..envs.layout import SITE_CONTEXT
from ..scenario import Scenario, ScenarioError, load_scenario
from .onnx_policy import ACTION, DTYPE, EPISODE_START, FORMAT, MANIFEST, OBS, STATE_C, STATE_C_OUT, STATE_H, STATE_H_OUT, OnnxPolicy, read_manifest, scenario_fingerprint

POLICY_FILE = "policy.onnx"
SCENARIO_FILE = "scenario.yaml"
#: The ONNX operator set the graph is written with (onnxruntime >= 1.18 runs it).
OPSET = 17
#: After writing, the graph's actions on the first observations of this many test days must be within
#: ``CHECK_TOLERANCE`` of ``model.predict``'s (float32 sums in another order differ by about 1e-6).
CHECK_DAYS, CHECK_TOLERANCE = 8, 1e-4


class ExportError(ValueError):
    """A model that cannot be exported as asked: an unsupported policy, a scenario or statistics that do not
    fit it, an output folder that cannot be written."""


class _Deterministic(th.nn.Module):
    """``policy.predict(obs, deterministic=True)`` as one traceable module, with the observation
    normalisation in front (``normalizer``, or none).

    :param policy: the model's policy
    :param normalizer: the statistics the model acts with; ``None`` (or ``norm_obs`` off): raw observations
    """

    def __init__(self, policy: BasePolicy, normalizer: VecNormalize | None) -> None:
        super().__init__()
        self.policy = policy
        self.normalize = normalizer is not None and normalizer.norm_obs
        if self.normalize:
            rms = normalizer.obs_rms
            self.register_buffer("mean", th.as_tensor(np.asarray(rms.mean, dtype=np.float64)))
            self.register_buffer("std", th.as_tensor(np.sqrt(np.asarray(rms.var, dtype=np.float64) + normalizer.epsilon)))
            self.clip_obs = _clip_obs(normalizer)
        space = policy.action_space
        self.register_buffer("low", th.as_tensor(space.low, dtype=th.float32))
        self.register_buffer("high", th.as_tensor(space.high, dtype=th.float32))

    def observe(self, obs: th.Tensor) -> th.Tensor:
        """``VecNormalize.normalize_obs``: in float64, then float32 as the policy receives it."""
        if not self.normalize:
            return obs
        normalised = (obs.double() - self.mean) / self.std
        return (normalised if self.clip_obs is None else th.clamp(normalised, -self.clip_obs, self.clip_obs)).float()

    def finish(self, actions: th.Tensor) -> th.Tensor:
        """What ``predict`` does to a Box action: unscale a squashed one, clip any other. The reshape states the
        action's width to ONNX's shape inference, which leaves it symbolic when a (batch, 1) action broadcasts
        against the (1,) bounds."""
        if self.policy.squash_output:
            actions = self.low + (0.5 * (actions + 1.0) * (self.high - self.low))
        else:
            actions = th.maximum(th.minimum(actions, self.high), self.low)
        return actions.reshape(-1, self.low.shape[0])

    def forward(self, obs: th.Tensor) -> th.Tensor:
        return self.finish(self.policy._predict(self.observe(obs), deterministic=True))


def _clip_obs(normalizer: VecNormalize) -> float | None:
    """``normalizer.clip_obs``, ``None`` for infinity: no clipping, as the manifest writes it (strict JSON has no
    infinity, and VecNormalize takes ``clip_obs=inf``).

    :param normalizer: the statistics the model acts with
    """
    clip = float(normalizer.clip_obs)
    return None if clip == np.inf else clip


class _Recurrent(_Deterministic):
    """A ``RecurrentPPO`` policy's deterministic step: the actor LSTM's state in and out; ``episode_start``
    resets it (``_predict`` multiplies it by ``1 - episode_start``, the branch traced for any value)."""

    def forward(self, obs: th.Tensor, h: th.Tensor, c: th.Tensor, episode_start: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        actions, (h, c) = self.policy._predict(self.observe(obs), (h, c), episode_start, deterministic=True)
        return self.finish(actions), h, c


def export_model(
    path: str | Path,
    out: str | Path,
    algo: str | None = None,
    vecnormalize: str | Path | None = None,
    scenario: str | Path | Scenario | None = None,
    trust_modules: Sequence[str] = (),
    kpis: str | Path | None = None,
) -> dict[str, Any]:
    """Write ``policy.onnx``, ``manifest.json`` and ``scenario.yaml`` of the model at ``path`` into ``out``.

    :param path: the model's ``.zip``
    :param out: the export folder (created; files of these names in it are replaced once the new ones pass the check,
        so a failed export leaves a previous one intact)
    :param algo: its registered algorithm name; ``None`` finds it as evaluation does (:func:`~sb3_microgrid.algos.identify`)
    :param vecnormalize: its ``VecNormalize`` statistics; ``None`` finds them as evaluation does
    :param scenario: the scenario it acts in (preset name, YAML path or :class:`Scenario`); ``None``: the site recorded in the
        run's ``run.json`` (``sb3-microgrid adapt``), else the run's ``env_kwargs`` scenario, else ``campus``
    :param trust_modules: the user's own modules the run's ``env_wrapper`` entries may come from
    :param kpis: ``sb3-microgrid evaluate --json`` output of this model on the test split of the scenario exported
        (its summary's ``model_sha256`` and ``scenario_fingerprint`` are compared with them), recorded as the manifest's
        test KPIs (the validation KPIs are read from the run's ``validation.json``)
    :return: the manifest, as read back from ``out``
    :raises FileNotFoundError: if the model or a given file does not exist
    :raises ExportError: (a ``ValueError``) naming the problem, for a model, scenario, statistics or folder
        that cannot be exported as asked
    """
    path, out = Path(path), Path(out)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file, not a folder")
    model = load(path, algo)
    name = algo if algo is not None else next(n for n, cls in ALGOS.items() if type(model) is cls)
    if not isinstance(model.observation_space, spaces.Box) or not isinstance(model.action_space, spaces.Box):
        raise ExportError(
            f"{path} observes {model.observation_space} and acts in {model.action_space}: only flat Box observations and actions "
            "export (a goal-conditioned HER model of MicrogridGoal-v0 observes a Dict)"
        )
    stats, normalised = statistics_for(path, vecnormalize)
    if stats is None and normalised:
        raise ExportError(f"{path} was trained on normalised observations but no VecNormalize statistics were found beside it; pass them (--vecnormalize)")
    wrappers = run_env_wrappers(path, trust_modules)
    scenario_spec = scenario if scenario is not None else recorded_scenario(path) or "campus"
    try:
        site = load_scenario(scenario_spec)
    except ScenarioError as err:
        raise ExportError(f"the scenario of {path} ({scenario_spec!r}): {err}") from None
    test_kpis = _read_kpis(Path(kpis), site, path) if kpis is not None else None
    env = MicrogridEnv(scenario=site, split="test")
    action_layout = env.action_layout
    # The divisors of the window's columns (the load's is a statistic of the training data, not of the scenario):
    # the site controller (sb3_microgrid.deploy) builds observations from measurements with them.
    window_scale = dict(zip(env.obs_layout.window_names, env.core.site.window_scale.tolist()))
    # The site context holds such statistics too (the mean load of the training years): recorded by name.
    context = {"site_context": dict(zip(SITE_CONTEXT, env.core.context.tolist()))} if site.observation.site_context else {}
    for cls, kwargs in wrappers:
        env = cls(env, **kwargs)
    _check_fits(model, env, path, site)
    normalizer = None if stats is None else load_statistics(stats, env, path.stem)

    validation_kpis = _validation_kpis(path)
    out.mkdir(parents=True, exist_ok=True)
    # Written and checked in a folder of their own, the files replace those of a previous export only once they pass:
    # a failure leaves the folder as it was.
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out) as staging:
        staged = Path(staging)
        recurrent = isinstance(model.policy, RecurrentActorCriticPolicy)
        io = _write_graph(model, normalizer, staged / POLICY_FILE, recurrent)
        site.to_yaml(staged / SCENARIO_FILE)
        manifest = {
            "format": FORMAT,
            "algorithm": name,
            "policy_class": f"{type(model.policy).__module__}.{type(model.policy).__qualname__}",
            "recurrent": recurrent,
            "observation": {
                "layout": env.observation_space.layout.to_dict(),
                "window_scale": window_scale,
                **context,
                "size": int(model.observation_space.shape[0]),
                "normalization": None if normalizer is None or not normalizer.norm_obs else {
                    "folded": True, "source": stats.name, "epsilon": float(normalizer.epsilon), "clip_obs": _clip_obs(normalizer),
                },
            },  # fmt: skip
            "action": {
                "size": int(model.action_space.shape[0]),
                "low": model.action_space.low.tolist(),
                "high": model.action_space.high.tolist(),
                # the env's entries; a run's env wrappers (below) turn the policy's output into them
                "env": action_layout.to_dict(),
                "is_env_action": not wrappers,
            },
            "env_wrappers": [{f"{cls.__module__}.{cls.__qualname__}": kwargs} for cls, kwargs in wrappers],
            "scenario": {"name": site.name, "file": SCENARIO_FILE, "sha256": scenario_fingerprint(site)},
            "training": {"num_timesteps": int(model.num_timesteps), "source": str(path)},
            "kpis": {"validation": validation_kpis, "test": test_kpis},
            "onnx": {"file": POLICY_FILE, "opset": OPSET, **io},
            "versions": _versions(),
        }
        if recurrent:
            lstm = model.policy.lstm_actor
            manifest["lstm"] = {"layers": lstm.num_layers, "hidden_size": lstm.hidden_size}
        write = lambda: (staged / MANIFEST).write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n")  # noqa: E731
        write()  # OnnxPolicy reads the folder as a site will
        manifest["check"] = _check_graph(model, normalizer, env, staged)
        write()
        # The manifest goes first and comes last: a folder interrupted in between is no export, not a mix of two.
        (out / MANIFEST).unlink(missing_ok=True)
        for file in (POLICY_FILE, SCENARIO_FILE, MANIFEST):
            (staged / file).replace(out / file)
    return read_manifest(out)


def _check_fits(model: BaseAlgorithm, env: Any, path: Path, scenario: Scenario) -> None:
    """The model observes what ``env`` (the scenario's env under the run's wrappers) gives, whose layout the
    manifest records, and acts in its space."""
    given = getattr(env.observation_space, "layout", None)
    if given is None:
        raise ExportError(f"the env wrappers of {path}'s run give an observation without an ObservationLayout ({env.observation_space}): the manifest cannot describe it")
    trained = getattr(model.observation_space, "layout", None)  # None: a space saved without one; its size is checked
    if model.observation_space.shape != env.observation_space.shape or trained not in (None, given):
        raise ExportError(
            f"{path} was trained on another observation than scenario {scenario.name!r} gives "
            f"({trained or model.observation_space.shape} vs {given}); name its scenario (--scenario)"
        )
    if model.action_space.shape != env.action_space.shape:
        raise ExportError(f"{path} acts with shape {model.action_space.shape}, scenario {scenario.name!r} with {env.action_space.shape}; name its scenario (--scenario)")


def _check_graph(model: BaseAlgorithm, normalizer: VecNormalize | None, env: Any, out: Path) -> dict[str, Any]:
    """Compare the written export with ``model.predict(deterministic=True)`` on the first observation of
    :data:`CHECK_DAYS` test days (one batch; a new episode each for a recurrent policy).

    :raises ExportError: if an action differs by more than :data:`CHECK_TOLERANCE`
    """
    obs = np.stack([env.reset(seed=seed)[0] for seed in range(CHECK_DAYS)]).astype(np.float32)
    policy = OnnxPolicy(out)
    starts = np.ones(CHECK_DAYS, dtype=bool)
    if policy.recurrent:
        exported, _ = policy.step(obs, policy.initial_state(CHECK_DAYS), starts)
    else:
        exported = policy.act(obs)
    seen = obs if normalizer is None else normalizer.normalize_obs(obs)
    expected, _ = model.predict(seen, episode_start=starts, deterministic=True)
    diff = float(np.max(np.abs(exported - expected)))
    if not diff <= CHECK_TOLERANCE:
        raise ExportError(f"the exported graph's actions differ from model.predict's by {diff:.3g} (> {CHECK_TOLERANCE}) on test-day observations")
    return {"observations": CHECK_DAYS, "max_abs_action_diff": diff}


def _write_graph(model: BaseAlgorithm, normalizer: VecNormalize | None, file: Path, recurrent: bool) -> dict[str, Any]:
    """Trace the deterministic policy into ``file``; the graph's inputs and outputs as the manifest lists them."""
    policy = model.policy.to("cpu")
    policy.set_training_mode(False)  # batch norm (CrossQ) and dropout in inference mode, as predict sets them
    obs_dim, act_dim = model.observation_space.shape[0], model.action_space.shape[0]
    obs = th.zeros((1, obs_dim), dtype=th.float32)
    batch = {0: "batch"}
    if recurrent:
        lstm = policy.lstm_actor
        state = th.zeros((lstm.num_layers, 1, lstm.hidden_size), dtype=th.float32)
        module: th.nn.Module = _Recurrent(policy, normalizer)
        args: tuple[th.Tensor, ...] = (obs, state, state.clone(), th.ones(1))
        inputs, outputs = [OBS, STATE_H, STATE_C, EPISODE_START], [ACTION, STATE_H_OUT, STATE_C_OUT]
        axes = {OBS: batch, STATE_H: {1: "batch"}, STATE_C: {1: "batch"}, EPISODE_START: batch, ACTION: batch, STATE_H_OUT: {1: "batch"}, STATE_C_OUT: {1: "batch"}}
        shapes = {OBS: ["batch", obs_dim], STATE_H: [lstm.num_layers, "batch", lstm.hidden_size], EPISODE_START: ["batch"], ACTION: ["batch", act_dim]}
        shapes |= {STATE_C: shapes[STATE_H], STATE_H_OUT: shapes[STATE_H], STATE_C_OUT: shapes[STATE_H]}
    else:
        module, args = _Deterministic(policy, normalizer), (obs,)
        inputs, outputs = [OBS], [ACTION]
        axes = {OBS: batch, ACTION: batch}
        shapes = {OBS: ["batch", obs_dim], ACTION: ["batch", act_dim]}
    module.eval()
    # Attention layers' fused inference kernel (aten::_transformer_encoder_layer_fwd) has no ONNX form; the
    # unfused path computes the same.
    fastpath = th.backends.mha.get_fastpath_enabled()
    th.backends.mha.set_fastpath_enabled(False)
    try:
        # The TorchScript-based exporter: the dynamo one needs onnxscript, which is not a dependency. Its
        # deprecation notice, and the tracer's note that torch.distributions' argument checks were not
        # recorded (they only validate), say nothing about this graph.
        with th.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=th.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning, module=r"torch\.onnx")
            # the LSTM's initial state is an input here, as the exporter asks
            warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1", category=UserWarning)
            th.onnx.export(module, args, str(file), input_names=inputs, output_names=outputs, dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    except th.onnx.errors.OnnxExporterError as err:
        raise ExportError(f"the policy {type(policy).__name__} cannot be written as ONNX: {err}") from None
    finally:
        th.backends.mha.set_fastpath_enabled(fastpath)
    describe = lambda names: [{"name": n, "shape": shapes[n], "dtype": DTYPE} for n in names]  # noqa: E731
    return {"inputs": describe(inputs), "outputs": describe(outputs)}


def _validation_kpis(path: Path) -> dict[str, Any] | None:
    """The best validation score of the run (``validation.json`` of :class:`~sb3_microgrid.validation.ValidationCallback`,
    beside the model or in its parent folder), or ``None``."""
    for folder in (path.parent, path.parent.parent):
        file = folder / "validation.json"
        if file.is_file():
            try:
                return json.loads(file.read_text(), parse_constant=refuse_constant)["best"]
            except (OSError, ValueError, KeyError, TypeError, RecursionError) as err:  # RecursionError: nested too deeply
                raise ExportError(f"{file} is not a validation record of ValidationCallback: {type(err).__name__}: {err}") from None
    return None


def _read_kpis(file: Path, scenario: Scenario, model: Path) -> dict[str, Any]:
    """The summary of one controller in an ``sb3-microgrid evaluate --json`` file, of the test split, checked to be the
    model's on the scenario exported: another controller's, run's or site's KPIs would be recorded as this policy's.
    Names cannot tell: every run saves ``model.zip``, and a scenario built on a preset keeps the preset's name. The
    summary's ``model_sha256`` and ``scenario_fingerprint`` (:func:`~sb3_microgrid.evaluation.evaluate`) can.

    :param file: the ``--json`` file
    :param scenario: the scenario exported (compared with ``summary.scenario_fingerprint``)
    :param model: the model's zip (compared with ``summary.model_sha256``)
    :raises ExportError: naming the file and the field
    """
    try:
        summary = json.loads(file.read_text(), parse_constant=refuse_constant)["summary"]
        split = summary["split"]
    except FileNotFoundError:
        raise FileNotFoundError(f"no KPI file at {file}") from None
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as err:  # RecursionError: nested too deeply
        raise ExportError(f"{file} is not the --json output of sb3-microgrid evaluate for one controller: {type(err).__name__}: {err}") from None
    if split != "test":
        raise ExportError(f"{file} scores the {split!r} split; the manifest's test KPIs need the 'test' split")
    evaluate_it = f"sb3-microgrid evaluate --controller {model} --json EVAL.json (with export's --scenario, if given)"
    # Refused, not taken with a warning: the names an older file records are what let another run's KPIs through.
    missing = [f"summary.{key}" for key in ("model_sha256", "scenario_fingerprint") if key not in summary]
    if missing:
        raise ExportError(f"{file} records no {' or '.join(missing)} (written by an older sb3-microgrid evaluate), so what it scored cannot be checked: run {evaluate_it} again")
    site_hash = scenario_fingerprint(scenario)
    if summary["scenario_fingerprint"] != site_hash:
        raise ExportError(
            f"{file} scores another scenario than the one exported: summary.scenario_fingerprint is {summary['scenario_fingerprint']!r:.80}, "
            f"scenario {scenario.name!r} exported has {site_hash} (scenario_fingerprint, of every field: a scenario built on a preset keeps "
            f"the preset's name, summary.scenario {summary.get('scenario')!r:.80}): run {evaluate_it}"
        )
    if summary["model_sha256"] is None:
        raise ExportError(f"{file} scores controller {summary.get('controller')!r:.80}, not a saved model (summary.model_sha256 is null): run {evaluate_it}")
    model_hash = model_sha256(model)
    if summary["model_sha256"] != model_hash:
        raise ExportError(
            f"{file} scores another model file than {model}: summary.model_sha256 is {summary['model_sha256']!r:.80}, {model} has {model_hash} "
            f"(every run saves model.zip: the name does not tell runs apart): run {evaluate_it}"
        )
    return summary


def _versions() -> dict[str, str]:
    import onnx
    import sb3_contrib
    import stable_baselines3

    return {
        "sb3_microgrid": metadata.version("sb3-microgrid"),
        "stable_baselines3": stable_baselines3.__version__,
        "sb3_contrib": sb3_contrib.__version__,
        "torch": th.__version__,
        "onnx": onnx.__version__,
        "python": platform.python_version(),
    }
