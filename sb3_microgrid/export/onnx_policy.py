"""An exported policy (``sb3-microgrid export``) run with onnxruntime and numpy alone.

This module imports neither torch, Stable-Baselines3 nor gymnasium: it is what a site controller runs.
An export folder holds ``manifest.json`` (:data:`MANIFEST`), the graph it names (``policy.onnx``) and the
scenario YAML; the graph takes raw observations (the normalisation is folded into it) and returns actions
in the env's action space.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from ..common.json_values import refuse_constant
from ..envs.layout import ObservationLayout
from ..scenario import Scenario, to_dict

MANIFEST = "manifest.json"
#: Version of the manifest's format; a folder of another version is refused.
FORMAT = 1
#: Names of the graph's inputs and outputs; a recurrent policy (``ppo_lstm``) has the ``STATE_*`` ones too.
OBS, ACTION = "obs", "action"
STATE_H, STATE_C, EPISODE_START = "lstm_h", "lstm_c", "episode_start"
STATE_H_OUT, STATE_C_OUT = "lstm_h_out", "lstm_c_out"
#: The dtype of every input and output (the manifest's ``dtype``: the runtime feeds float32), as onnxruntime names it.
DTYPE, ORT_TYPE = "float32", "tensor(float)"
#: The largest float32, the dtype every input is fed in: larger values become inf.
FLOAT32_MAX = float(np.finfo(np.float32).max)


class ManifestError(ValueError):
    """An export folder that cannot be used: missing files, a malformed manifest, a graph that does not match it."""


class ObservationShapeError(ValueError):
    """An observation of another shape or type than the policy takes."""


class RecurrentPolicyError(ValueError):
    """A recurrent policy asked to act without its state, or a feed-forward one given a state."""


class OnnxPolicy:
    """The policy of an export folder: ``act(obs)`` gives the actions ``model.predict(obs, deterministic=True)``
    gives for the model exported, from raw (unnormalised) observations.

    A recurrent policy (manifest ``recurrent``) acts with :meth:`step`, which takes and returns its LSTM state.

    :param path: the export folder (with ``manifest.json``)
    :param intra_op_threads: onnxruntime's threads per decision (``None``: onnxruntime's default)
    :raises ManifestError: naming the file and the problem, if the folder cannot be used
    """

    def __init__(self, path: str | Path, intra_op_threads: int | None = None) -> None:
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        options = ort.SessionOptions()
        if intra_op_threads is not None:
            if isinstance(intra_op_threads, bool) or not isinstance(intra_op_threads, int) or intra_op_threads < 1:
                raise ValueError(f"intra_op_threads must be an integer >= 1 or None, got {intra_op_threads!r}")
            options.intra_op_num_threads = intra_op_threads
        graph = self.path / self.manifest["onnx"]["file"]
        try:
            self.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types; name the file
            raise ManifestError(f"{graph} is not a graph onnxruntime can load: {type(err).__name__}: {err}") from None
        # read_manifest checked that every declared dtype is DTYPE
        declared = {io["name"]: {"shape": io["shape"], "type": ORT_TYPE} for io in self.manifest["onnx"]["inputs"] + self.manifest["onnx"]["outputs"]}
        found = {node.name: {"shape": list(node.shape), "type": node.type} for node in self.session.get_inputs() + self.session.get_outputs()}
        if found != declared:
            raise ManifestError(f"{graph} has inputs and outputs {found}, but {self.path / MANIFEST} declares {declared} (dtype {DTYPE!r} is {ORT_TYPE})")
        self.layout = ObservationLayout.from_dict(self.manifest["observation"]["layout"])
        self.obs_dim = self.layout.size
        self.action_dim = int(self.manifest["action"]["size"])
        self.recurrent = bool(self.manifest["recurrent"])

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The actions for observations of shape ``(obs_dim,)`` (one decision) or ``(n, obs_dim)``.

        :return: ``float32`` actions of shape ``(action_dim,)`` or ``(n, action_dim)``
        :raises ObservationShapeError: for another shape, or values that are not finite real numbers once cast to
            float32 (NaN, inf, beyond float32's range), naming the first of them
        :raises RecurrentPolicyError: for a recurrent policy (use :meth:`step`)
        """
        if self.recurrent:
            raise RecurrentPolicyError(f"{self.path} is a recurrent policy: act with step(obs, state, episode_start)")
        batch, single = self._batch(obs)
        (action,) = self.session.run([ACTION], {OBS: batch})
        return action[0] if single else action

    def initial_state(self, n: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """The LSTM state of ``n`` new episodes (zeros), for :meth:`step`."""
        if not self.recurrent:
            raise RecurrentPolicyError(f"{self.path} is a feed-forward policy: it has no state")
        layers, hidden = self.manifest["lstm"]["layers"], self.manifest["lstm"]["hidden_size"]
        return np.zeros((layers, n, hidden), dtype=np.float32), np.zeros((layers, n, hidden), dtype=np.float32)

    def step(self, obs: np.ndarray, state: tuple[np.ndarray, np.ndarray], episode_start: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """A recurrent policy's actions and next state, as ``model.predict(obs, state, episode_start, deterministic=True)``.

        :param obs: shape ``(obs_dim,)`` or ``(n, obs_dim)``
        :param state: ``(h, c)``, each of shape ``(layers, n, hidden_size)`` (:meth:`initial_state` for new episodes)
        :param episode_start: shape ``(n,)``: 1 where an episode starts at ``obs`` (its state is reset)
        :raises ObservationShapeError: for an observation of another shape or not finite (as :meth:`act`), a state or
            ``episode_start`` that does not fit it, a state that is not finite in float32 (a NaN cell gave NaN actions,
            a NaN hidden state an arbitrary one), or an ``episode_start`` other than 0 or 1 (it scales the state by
            ``1 - episode_start``)
        """
        if not self.recurrent:
            raise RecurrentPolicyError(f"{self.path} is a feed-forward policy: act with act(obs)")
        batch, single = self._batch(obs)
        n = batch.shape[0]
        with np.errstate(over="ignore"):  # a value beyond float32 becomes inf: reported below
            h, c = (np.asarray(s, dtype=np.float32) for s in state)
        starts = np.asarray(episode_start, dtype=np.float32).reshape(-1)
        expected = self.initial_state(n)[0].shape
        if h.shape != expected or c.shape != expected or starts.shape != (n,):
            raise ObservationShapeError(
                f"state must be two arrays of shape {expected} and episode_start of shape ({n},) for {n} observation(s); "
                f"got {h.shape}, {c.shape} and {starts.shape}"
            )
        for name, values in (("state[0] (h)", h), ("state[1] (c)", c)):
            where = _not_finite(values)
            if where:
                raise ObservationShapeError(f"{name} must be finite numbers within float32's range (|x| <= {FLOAT32_MAX:.3g}); not at (layer, row, unit) {where}")
        bad = np.flatnonzero((starts != 0) & (starts != 1))
        if len(bad):
            raise ObservationShapeError(f"episode_start must be 0 or 1 (1 resets the state); got {starts[bad[0]]} at index {int(bad[0])}")
        action, h, c = self.session.run([ACTION, STATE_H_OUT, STATE_C_OUT], {OBS: batch, STATE_H: h, STATE_C: c, EPISODE_START: starts})
        return (action[0] if single else action), (h, c)

    def _batch(self, obs: np.ndarray) -> tuple[np.ndarray, bool]:
        """``obs`` as a float32 batch, and whether it was one observation.

        :raises ObservationShapeError: naming the shape, or the first indices of values that are not finite
        """
        obs = np.asarray(obs)
        if obs.dtype.kind not in "fiu":
            raise ObservationShapeError(f"observations must be real numbers, got dtype {obs.dtype}")
        if obs.ndim not in (1, 2) or obs.shape[-1] != self.obs_dim:
            raise ObservationShapeError(f"observations must have shape ({self.obs_dim},) or (n, {self.obs_dim}), got {obs.shape}")
        with np.errstate(over="ignore"):  # a value beyond float32 becomes inf: reported below by its index
            batch = np.atleast_2d(obs).astype(np.float32, copy=False)
        where = _not_finite(batch[0] if obs.ndim == 1 else batch)
        if where:
            raise ObservationShapeError(
                f"observations must be finite numbers within float32's range (|x| <= {FLOAT32_MAX:.3g}); "
                f"not at {'index' if obs.ndim == 1 else '(row, index)'} {where}"
            )
        return batch, obs.ndim == 1


def _not_finite(values: np.ndarray) -> str:
    """The indices of the first five values that are not finite, and how many more (``""`` if all are finite)."""
    bad = np.argwhere(~np.isfinite(values))
    where = [int(i[0]) if values.ndim == 1 else tuple(i.tolist()) for i in bad[:5]]
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    return f"{', '.join(map(str, where))}{more}"


def scenario_fingerprint(scenario: Scenario | Mapping[str, Any]) -> str:
    """sha256 of the scenario's canonical JSON (every field, keys sorted): equal for equal scenarios. The manifest
    records it as ``scenario.sha256``.

    :param scenario: a scenario, or its fields as :meth:`~sb3_microgrid.scenario.Scenario.to_yaml` wrote them
    """
    text = json.dumps(to_dict(scenario), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the export folder ``path``, checked for the fields its readers use (:class:`OnnxPolicy`,
    the site controller): every field below is there and of its type, the files it names are in the folder.

    :raises ManifestError: naming the file and the field, if the folder or its manifest cannot be used
    """
    path = Path(path)
    if not path.is_dir():
        raise ManifestError(f"no export folder at {path}")
    file = path / MANIFEST
    try:
        manifest = json.loads(file.read_text(), parse_constant=refuse_constant)
    except FileNotFoundError:
        raise ManifestError(f"{path} is not an export folder: no {MANIFEST}") from None
    except (OSError, ValueError, RecursionError) as err:  # RecursionError: nested too deeply
        raise ManifestError(f"{file} is not readable JSON: {err}") from None
    # the type first: true == 1 in Python
    if not isinstance(manifest, dict) or type(manifest.get("format")) is not int or manifest["format"] != FORMAT:
        raise ManifestError(f"{file}: expected an object with format {FORMAT}, got format {manifest.get('format') if isinstance(manifest, dict) else manifest!r}")
    field = lambda name: _field(manifest, name, file)  # noqa: E731
    try:
        layout = ObservationLayout.from_dict(field("observation.layout"))
    except ValueError as err:
        raise ManifestError(f"{file}: observation.layout: {err}") from None
    size, recurrent = field("action.size"), field("recurrent")
    if not _is_int(size, 1):
        raise ManifestError(f"{file}: action.size must be an integer >= 1, got {size!r}")
    for name, value in (("recurrent", recurrent), ("action.is_env_action", field("action.is_env_action"))):
        if not isinstance(value, bool):
            raise ManifestError(f"{file}: {name} must be true or false, got {value!r:.100}")
    if recurrent:
        layers, hidden = field("lstm.layers"), field("lstm.hidden_size")
        if not (_is_int(layers, 1) and _is_int(hidden, 1)):
            raise ManifestError(f"{file}: lstm.layers and lstm.hidden_size must be integers >= 1, got {layers!r} and {hidden!r}")
    shapes = {}
    for name in ("onnx.inputs", "onnx.outputs"):
        entries = field(name)
        if not isinstance(entries, list) or not all(
            isinstance(io, dict) and isinstance(io.get("name"), str) and "shape" in io and io.get("dtype") == DTYPE for io in entries
        ):
            raise ManifestError(f"{file}: {name} must be a list of objects with a string name, a shape and dtype {DTYPE!r}, got {entries!r:.100}")
        shapes.update((io["name"], io["shape"]) for io in entries)
    names = list(shapes)
    wanted = [OBS, ACTION] + ([STATE_H, STATE_C, EPISODE_START, STATE_H_OUT, STATE_C_OUT] if recurrent else [])
    if sorted(names) != sorted(wanted):
        raise ManifestError(f"{file}: onnx inputs and outputs must be {wanted}, got {names}")
    if shapes[OBS] != ["batch", layout.size] or shapes[ACTION] != ["batch", size]:
        raise ManifestError(
            f"{file}: onnx {OBS} must have shape ['batch', {layout.size}] (the layout's size) and {ACTION} ['batch', {size}] "
            f"(action.size), got {shapes[OBS]} and {shapes[ACTION]}"
        )
    if recurrent:
        # initial_state builds the state from lstm.*: one that does not fit the graph failed inside onnxruntime
        state = [layers, "batch", hidden]
        found = {name: shapes[name] for name in (STATE_H, STATE_C, STATE_H_OUT, STATE_C_OUT, EPISODE_START)}
        if found != {STATE_H: state, STATE_C: state, STATE_H_OUT: state, STATE_C_OUT: state, EPISODE_START: ["batch"]}:
            raise ManifestError(
                f"{file}: lstm.layers = {layers} and lstm.hidden_size = {hidden} do not fit the graph's state: onnx {STATE_H}, {STATE_C}, "
                f"{STATE_H_OUT} and {STATE_C_OUT} must have shape [lstm.layers, 'batch', lstm.hidden_size] = {state} and "
                f"{EPISODE_START} ['batch']; got {found}"
            )
    for name in ("onnx.file", "scenario.file"):
        named = field(name)
        # a plain name: a manifest must not reach files outside its folder
        if not isinstance(named, str) or Path(named).name != named or not (path / named).is_file():
            raise ManifestError(f"{file}: {name} must name a file in {path}, got {named!r:.100}")
    sha256 = field("scenario.sha256")
    if not isinstance(sha256, str):
        raise ManifestError(f"{file}: scenario.sha256 must be a string (scenario_fingerprint of the scenario), got {sha256!r:.100}")
    return manifest


def _is_int(value: Any, lo: int) -> bool:
    """``value`` is an integer (not a bool, not a float) >= ``lo``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= lo


def _field(manifest: dict[str, Any], name: str, file: Path) -> Any:
    """The manifest's field at the dotted ``name``.

    :raises ManifestError: naming the field, if it or an object on its way is missing
    """
    node = manifest
    for key in name.split("."):
        if not isinstance(node, dict) or key not in node:
            raise ManifestError(f"{file}: missing or malformed field {name} (not an object with {key!r})")
        node = node[key]
    return node
