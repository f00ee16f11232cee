"""Model zips, VecNormalize statistics and replay buffers are read without running what their pickles name."""

from __future__ import annotations

import base64
import io
import json
import pickle
import zipfile
from collections import OrderedDict, deque
from pathlib import Path
from types import FunctionType

import numpy as np
import pytest
import torch as th
from gymnasium.spaces import Box
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.save_util import json_to_data
from stable_baselines3.common.utils import ConstantSchedule
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
from stable_baselines3.her.goal_selection_strategy import GoalSelectionStrategy

from sb3_microgrid import MicrogridEnv
from sb3_microgrid.algos import load
from sb3_microgrid.baselines import make_controller
from sb3_microgrid.common.safe_pickle import UnsafePickleError, load_replay_buffer, load_vecnormalize, loads, model_objects


class _Touch:
    """Unpickled, creates ``path``: stands for any code a pickle can run (``os.system`` and the like)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _replace_member(archive_path: Path, member: str, content: bytes) -> None:
    with zipfile.ZipFile(archive_path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members[member] = content
    with zipfile.ZipFile(archive_path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    PPO("MlpPolicy", MicrogridEnv(), n_steps=16, batch_size=16, seed=0).save(folder / "model.zip")
    return folder / "model.zip"


def _with_payload(saved: Path, tmp_path: Path, key: str, payload: bytes) -> Path:
    target = tmp_path / "model.zip"
    target.write_bytes(saved.read_bytes())
    with zipfile.ZipFile(target) as archive:
        data = json.loads(archive.read("data"))
    data[key] = {":type:": "<class 'object'>", ":serialized:": base64.b64encode(payload).decode()}
    _replace_member(target, "data", json.dumps(data).encode())
    return target


def test_the_hostile_payload_runs_under_sb3s_own_reader(saved, tmp_path):
    """The control: without this module the file's code runs."""
    marker = tmp_path / "ran"
    target = _with_payload(saved, tmp_path, "policy_class", pickle.dumps(_Touch(marker)))
    with zipfile.ZipFile(target) as archive:
        json_to_data(archive.read("data").decode())
    assert marker.exists()


@pytest.mark.parametrize("key", ["policy_class", "observation_space", "action_space", "policy_kwargs"])
def test_a_model_whose_pickle_runs_code_is_refused_before_it_runs(saved, tmp_path, key):
    marker = tmp_path / "ran"
    target = _with_payload(saved, tmp_path, key, pickle.dumps(_Touch(marker)))
    for reader in (load, make_controller):
        with pytest.raises(UnsafePickleError, match=rf"model.zip: attribute '{key}': refused (builtins|io).open"):
            reader(str(target))
    assert not marker.exists()


def test_a_hostile_training_attribute_is_not_run_and_not_needed_to_act(saved, tmp_path):
    marker = tmp_path / "ran"
    target = _with_payload(saved, tmp_path, "lr_schedule", pickle.dumps(_Touch(marker)))
    model = load(target)
    assert model.predict(model.observation_space.sample())[0].shape == model.action_space.shape and not marker.exists()
    with zipfile.ZipFile(target) as archive, pytest.raises(UnsafePickleError, match="attribute 'lr_schedule'"):
        model_objects(archive.read("data").decode(), prediction=False)


def test_an_attribute_only_training_reads_is_replaced_for_prediction_and_refused_for_training(tmp_path):
    """A lambda schedule (as rl_zoo3's ``lin_3e-4``) is pickled by value: prediction does without it, a resumed run may not."""
    PPO("MlpPolicy", MicrogridEnv(), learning_rate=lambda progress: 3e-4 * progress, n_steps=16, batch_size=16, seed=0).save(tmp_path / "model.zip")
    model = load(tmp_path / "model.zip")
    assert model.lr_schedule(1.0) == 0.0
    with zipfile.ZipFile(tmp_path / "model.zip") as archive:
        text = archive.read("data").decode()
    with pytest.raises(UnsafePickleError, match="attribute 'learning_rate'"):
        model_objects(text, prediction=False)


@pytest.mark.parametrize("algo", ["ars", "reptile"])
def test_a_closure_schedule_of_ars_or_reptile_does_not_stop_prediction(tmp_path, algo):
    """rl_zoo3's ``lin_`` schedules are closures: ARS's ``delta_std`` and Reptile's ``meta_step_size`` only train."""
    from sb3_contrib import ARS

    from sb3_microgrid.reptile import Reptile

    schedule = lambda progress: 0.02 * progress  # noqa: E731 - a closure, pickled by value as rl_zoo3's are
    if algo == "ars":
        model = ARS("LinearPolicy", MicrogridEnv(), delta_std=schedule, n_delta=2, seed=0)
    else:
        model = Reptile("MlpPolicy", MicrogridEnv(), meta_step_size=schedule, inner_updates=1, n_steps=16, batch_size=16, seed=0)
    model.save(tmp_path / "model.zip")
    obs, _ = MicrogridEnv().reset(seed=0)
    np.testing.assert_array_equal(load(tmp_path / "model.zip").predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    with zipfile.ZipFile(tmp_path / "model.zip") as archive:
        text = archive.read("data").decode()
    with pytest.raises(UnsafePickleError, match="attribute '(delta_std_schedule|meta_step_size)"):
        model_objects(text, prediction=False)


def test_statistics_of_another_observation_layout_of_the_same_size_are_refused(tmp_path):
    """``set_venv`` compares sizes only: 16 + 16 window rows have the size of campus's 8 + 24, not its layout."""
    other = {"base": "campus", "forecast": {"history_steps": 16, "forecast_steps": 16}}
    env = VecNormalize(DummyVecEnv([lambda: MicrogridEnv(other)]))
    assert env.observation_space.shape == MicrogridEnv().observation_space.shape
    env.save(tmp_path / "stats.pkl")
    with pytest.raises(ValueError, match="stats.pkl holds statistics of another observation layout"):
        load_vecnormalize(tmp_path / "stats.pkl", DummyVecEnv([MicrogridEnv]))
    load_vecnormalize(tmp_path / "stats.pkl", DummyVecEnv([lambda: MicrogridEnv(other)]))


def test_hostile_vecnormalize_statistics_are_refused(tmp_path):
    marker, stats = tmp_path / "ran", tmp_path / "model_vecnormalize.pkl"
    stats.write_bytes(pickle.dumps(_Touch(marker)))
    with pytest.raises(UnsafePickleError, match="VecNormalize statistics .*refused"):
        load_vecnormalize(stats, DummyVecEnv([MicrogridEnv]))
    assert not marker.exists()


def test_vecnormalize_statistics_round_trip(tmp_path):
    env = VecNormalize(DummyVecEnv([MicrogridEnv]))
    env.reset()
    env.step([env.action_space.sample()])
    env.save(tmp_path / "stats.pkl")
    loaded = load_vecnormalize(tmp_path / "stats.pkl", DummyVecEnv([MicrogridEnv]))
    assert (loaded.obs_rms.mean == env.obs_rms.mean).all() and loaded.obs_rms.count == env.obs_rms.count


def test_statistics_of_another_kind_are_named(tmp_path):
    (tmp_path / "stats.pkl").write_bytes(pickle.dumps({"mean": 0}))
    with pytest.raises(ValueError, match="holds a dict, not a VecNormalize"):
        load_vecnormalize(tmp_path / "stats.pkl", DummyVecEnv([MicrogridEnv]))


def test_replay_buffer_round_trip_and_a_hostile_one(tmp_path):
    model = SAC("MlpPolicy", MicrogridEnv(), buffer_size=64, learning_starts=8, batch_size=8, seed=0)
    model.learn(16)
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    fresh = SAC("MlpPolicy", MicrogridEnv(), buffer_size=64, seed=0)
    load_replay_buffer(fresh, tmp_path / "buffer.pkl")
    assert fresh.replay_buffer.pos == model.replay_buffer.pos and (fresh.replay_buffer.observations == model.replay_buffer.observations).all()
    marker = tmp_path / "ran"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(_Touch(marker)))
    with pytest.raises(UnsafePickleError, match="replay buffer"):
        load_replay_buffer(fresh, tmp_path / "evil.pkl")
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        b"cos\nsystem\n(S'true'\ntR.",  # protocol 0: os.system('true')
        pickle.dumps(print),
        pickle.dumps(eval),
        pickle.dumps(Path),  # a class outside the trusted packages
        pickle.dumps(MicrogridEnv),  # a trusted package's class of a kind no SB3 file holds
    ],
    ids=["os_system", "builtin_function", "eval", "foreign_class", "env_class"],
)
def test_only_what_sb3_files_hold_is_resolved(payload):
    with pytest.raises(UnsafePickleError, match="refused"):
        loads(payload)


def test_hostile_statistics_beside_a_model_are_refused_when_it_is_loaded_to_act(saved, tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "model.zip").write_bytes(saved.read_bytes())
    (tmp_path / "model_vecnormalize.pkl").write_bytes(pickle.dumps(_Touch(marker)))
    controller = make_controller(str(tmp_path / "model.zip"))  # the statistics are read at the first reset
    env = MicrogridEnv()
    obs, _ = env.reset(seed=0)
    with pytest.raises(UnsafePickleError, match="model_vecnormalize.pkl.*refused"):
        controller.reset(env, obs)
    assert not marker.exists()


def test_a_name_under_an_untrusted_or_private_module_is_refused_before_importing_it():
    """Importing a module can run code: ``torch.utils.model_dump.__main__`` exits the process at import."""
    import sys

    for module in ("torch.utils.model_dump.__main__", "sb3_microgrid._lazy", "stable_baselines3.__main_like__"):
        with pytest.raises(UnsafePickleError, match="refused"):
            loads(f"c{module}\nX\n.".encode())
    assert "torch.utils.model_dump.__main__" not in sys.modules


def test_a_class_of_a_module_whose_name_only_begins_like_a_trusted_one_is_refused(monkeypatch):
    """Trust is by dotted module path: ``sb3_microgrid_x`` is not under ``sb3_microgrid``, even once imported and
    holding a class of a kind SB3 files hold (a space), nor ``gymnasium.spaces_x`` under ``gymnasium.spaces``. A bare
    string prefix check would resolve them."""
    import sys
    import types

    def space_class_in(name: str) -> type:
        module = types.ModuleType(name)
        module.LookAlikeBox = type("LookAlikeBox", (Box,), {"__module__": name})
        monkeypatch.setitem(sys.modules, name, module)
        return module.LookAlikeBox

    inside = space_class_in("sb3_microgrid.lookalike")
    assert loads(pickle.dumps(inside)) is inside  # the control: the same class under the trusted package is resolved
    for name in ("sb3_microgrid_x", "gymnasium.spaces_x"):
        with pytest.raises(UnsafePickleError, match=rf"refused {name}\.LookAlikeBox"):
            loads(pickle.dumps(space_class_in(name)))


def test_a_model_loaded_to_train_refuses_a_closure_schedule(tmp_path):
    PPO("MlpPolicy", MicrogridEnv(), learning_rate=lambda progress: 3e-4 * progress, n_steps=16, batch_size=16, seed=0).save(tmp_path / "model.zip")
    with pytest.raises(UnsafePickleError, match="attribute 'learning_rate'"):
        load(tmp_path / "model.zip", prediction=False)


def test_a_tensor_attribute_round_trips_through_the_weights_only_storage_reader():
    import torch as th

    tensor = th.arange(6, dtype=th.float32).reshape(2, 3)
    np.testing.assert_array_equal(loads(pickle.dumps(tensor)).numpy(), tensor.numpy())


def test_adapt_loads_to_train_and_refuses_a_closure_schedule(tmp_path):
    from sb3_microgrid.adaptation import adapt

    PPO("MlpPolicy", MicrogridEnv(), learning_rate=lambda progress: 3e-4 * progress, n_steps=16, batch_size=16, seed=0).save(tmp_path / "model.zip")
    with pytest.raises(UnsafePickleError, match="attribute 'learning_rate'"):
        adapt(tmp_path / "model.zip", "factory", 0, tmp_path / "out")


def test_a_model_zip_is_read_once_and_sb3_gets_its_bytes(saved, monkeypatch):
    from stable_baselines3.common import save_util

    reads, given = [], []
    read_bytes, open_path = Path.read_bytes, save_util.open_path
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or read_bytes(self))
    monkeypatch.setattr(save_util, "open_path", lambda path, *args, **kwargs: given.append(path) or open_path(path, *args, **kwargs))
    load(saved)
    assert reads.count(saved) == 1 and given and all(not isinstance(p, (str, Path)) for p in given)


def _dtype(code: bytes, build: bool = True) -> bytes:
    """A pickled numpy dtype, with the state numpy gives a plain little-endian one."""
    made = b"cnumpy\ndtype\n(S'" + code + b"'\nI00\nI01\ntR"
    return made + b"(I3\nS'<'\nNNNI-1\nI-1\nI0\ntb" if build else made


#: numpy's first half of a pickled array: ``_reconstruct(ndarray, (0,), b"b")``, whose BUILD follows.
_ARRAY = b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n(I0\ntC\x01btR"


def _array_state(data: bytes, n: int, code: bytes = b"f8") -> bytes:
    """The BUILD state of a 1-D array of ``n`` items of dtype ``code`` held in ``data``."""
    return b"(I1\n(I%d\nt" % n + _dtype(code) + b"I00\nB" + len(data).to_bytes(4, "little") + data + b"t"


class _Parameter:
    """Pickles as ``torch._utils._rebuild_parameter(data, True, hooks)``, which torch's own pickles never hold."""

    def __init__(self, data, hooks) -> None:
        self.data, self.hooks = data, hooks

    def __reduce__(self):
        from torch._utils import _rebuild_parameter

        return (_rebuild_parameter, (self.data, True, self.hooks))


class _Tensor:
    """Pickles as ``torch._utils._rebuild_tensor_v2`` of ``data``'s storage, with ``hooks`` and another ``size``."""

    def __init__(self, data, hooks, size=None) -> None:
        self.data, self.hooks, self.size = data, hooks, size

    def __reduce__(self):
        from torch._utils import _rebuild_tensor_v2

        size = self.size or tuple(self.data.size())
        return (_rebuild_tensor_v2, (self.data._typed_storage(), 0, size, (1,), False, self.hooks))


_SEED_SEQUENCE = b"cnumpy.random.bit_generator\n__pyx_unpickle_SeedSequence\n(cnumpy.random.bit_generator\nSeedSequence\nI0\nNtR"


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"cnumpy\ndtype\n(S'f8'\nI00\nI01\ntR(I3\nS'<'\nNNNI-1\nI-1\nI63\ntb.", "float64 with the state"),  # flags: holds objects
        (b"cnumpy\ndtype\n(S'V8'\nI00\nI01\ntR(I3\nS'|'\nNNNI8\nI1\nI0\ntb.", "only plain number and object dtypes"),
        (b"cnumpy.random._pickle\n__bit_generator_ctor\n(S'MT19937'\ntR}b.", "bit generator 'MT19937'"),
        # numpy.ndarray(shape, object dtype, bytes) takes the bytes as object pointers
        (b"cnumpy\nndarray\n((I1\nt" + _dtype(b"O", build=False) + b"C\x08AAAAAAAAtR.", "ndarray called directly"),
        # a view (numpy.float64 of a float64 array is one) kept while a second BUILD frees the array's memory
        (_ARRAY + _array_state(bytes(8), 1) + b"bp0\n0cnumpy\nfloat64\n(g0\ntR0g0\n" + _array_state(bytes(8000), 1000) + b"b.", "BUILD on numpy.ndarray"),
        (_ARRAY + b"2" + _array_state(bytes(8), 1) + b"b0" + _array_state(bytes(8), 1) + b"b.", "second BUILD"),
        (_ARRAY + b".", "without its state"),
        (b"cnumpy.core.numeric\n_frombuffer\n(" + _ARRAY + _array_state(bytes(8), 1) + b"b" + _dtype(b"f8") + b"(I1\ntS'C'\ntR.", "_frombuffer"),
        # a Generator around the Mersenne Twister (by name, or the constructor's default), whose state BUILD then sets
        (b"cnumpy.random._pickle\n__generator_ctor\n(S'MT19937'\ntR.", "bit generator 'MT19937'"),
        (b"cnumpy.random._pickle\n__generator_ctor\n)R.", "bit generator None"),
        # NEWOBJ leaves a compiled class uninitialised (its BUILD then writes through a null pointer)
        (b"cnumpy.random._pcg64\nPCG64\n)\x81.", "made without its constructor"),
        (_SEED_SEQUENCE + b"(I3\nI0\n" + _ARRAY + _array_state(bytes(16), 4, b"u4") + b"bI4\n)tb.", "pool is not the one"),
        # BUILD on a class or an enum member would change it for the whole process
        (b"cstable_baselines3.common.utils\nConstantSchedule\n(N}S'val'\nI1\nstb.", "BUILD on builtins.type"),
        (b"cstable_baselines3.her.goal_selection_strategy\nGoalSelectionStrategy\n(I0\ntR(N}S'_value_'\nI2\nstb.", "BUILD on stable_baselines3.her"),
        (pickle.dumps(_Parameter(th.ones(2), OrderedDict({0: deque}))), "backward hooks"),
        (pickle.dumps(_Tensor(th.ones(2), OrderedDict({0: deque}))), "backward hooks"),
        (pickle.dumps(_Tensor(th.ones(2), OrderedDict(), size=(1000,))), "reaches element 1000 of a storage of 2"),
        # a slot state's setattr swaps an object's class (a ConstantSchedule made a SumTree, skipping its checks)
        (b"cstable_baselines3.common.utils\nConstantSchedule\n)\x81(}}S'__class__'\ncsb3_microgrid.buffers.sum_tree\nSumTree\nstb.", "slot state"),
        # Optimizer.__setstate__ would replace SGD.step for the process with the file's profile_hook_step
        (b"ctorch.optim.sgd\nSGD\n)\x81}S'profile_hook_step'\ncstable_baselines3.common.utils\nConstantSchedule\nsb.", "made without its constructor"),
        (b"cstable_baselines3.common.running_mean_std\nRunningMeanStd\n)\x81}S'update'\nI1\nsb.", "'update' for RunningMeanStd: it is not data"),
        (b"cnumpy\nfloating\n.", "refused numpy.floating"),
        (b"cnumpy\nsctypeDict\n.", "refused numpy.sctypeDict"),
        # a slot state that is not a dict but has items() (a Dict space) swapped the class again (a fifth review)
        (b"cstable_baselines3.common.utils\nConstantSchedule\n)\x81Ncgymnasium.spaces.dict\nDict\n)\x81}S'spaces'\n}S'__class__'\n"
         b"csb3_microgrid.buffers.sum_tree\nSumTree\nssb\x86b.", "slot state"),
        # a list of pairs, which Optimizer.__setstate__ and Space.__setstate__ would copy in unchecked
        (b"cgymnasium.spaces.discrete\nDiscrete\n)\x81](S'sample'\nI1\n\x86eb.", "refused a list as the state of Discrete"),
    ],
    ids=[
        "dtype_flags", "void_dtype", "mersenne_twister_by_name", "ndarray_called", "view_outlives_build", "second_build",
        "unbuilt_array", "frombuffer_over_array", "generator_mersenne_twister", "generator_default", "newobj_compiled",
        "seed_sequence_pool", "build_class", "build_enum_member", "parameter_hooks", "tensor_hooks", "tensor_past_storage",
        "class_swap", "optimizer_step", "method_hidden", "abstract_scalar", "unhashable_numpy_name", "class_swap_by_mapping",
        "list_of_pairs",
    ],
)
def test_numpy_and_torch_objects_that_could_corrupt_memory_or_shared_state_are_refused(payload, message):
    with pytest.raises(UnsafePickleError, match=message):
        loads(payload)
    assert not hasattr(ConstantSchedule, "val") and GoalSelectionStrategy.FUTURE.value == 0
    # torch wraps an optimizer class's step in a function once; the attack made it a ConstantSchedule
    assert all(isinstance(vars(optimizer)["step"], FunctionType) for optimizer in (th.optim.SGD, th.optim.Adam))


def test_a_pickled_seed_sequence_is_made_by_its_constructor():
    pool = np.random.SeedSequence(3).pool.tobytes()
    restored = loads(_SEED_SEQUENCE + b"(I3\nI0\n" + _ARRAY + _array_state(pool, 4, b"u4") + b"bI4\n)tb.")
    assert type(restored) is np.random.SeedSequence and restored.generate_state(2).tolist() == np.random.SeedSequence(3).generate_state(2).tolist()


def test_what_sb3_files_hold_round_trips():
    rng = np.random.default_rng(0)
    space = Box(0.0, 1.0, (3,))
    space.seed(3)
    held = (GoalSelectionStrategy.FUTURE, rng, np.random.SeedSequence(7), np.arange(4.0), np.arange(3, dtype=">i4"), np.array([{"a": 1}, None]), {"r": np.float32(1.5)}, space, th.nn.Parameter(th.ones(2)))
    for obj in held:
        for protocol in (3, 4, 5):  # 5 pickles contiguous arrays through numpy's _frombuffer
            restored = loads(pickle.dumps(obj, protocol=protocol))
            assert type(restored) is type(obj)
    assert loads(pickle.dumps(space)).sample().tolist() == space.sample().tolist()
    assert loads(pickle.dumps(rng)).random() == np.random.default_rng(0).random()


def _torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    th.save(obj, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "member, content, message",
    [
        # SB3 sets `<name>.data` for each key: this one would set torch.Tensor.data for the whole process
        ("pytorch_variables.pth", {"policy.action_net.weight.__class__": th.ones(1)}, "pytorch_variables.pth entries"),
        ("tensors.pth", {"log_ent_coef.__class__": th.ones(1)}, "tensors.pth entries"),  # what SB3 reads in old zips
        ("pytorch_variables.pth", {"policy_class": th.ones(1)}, r"entries \['policy_class'\]"),  # a class's .data
        ("policy.__class__.pth", {}, "refused the member 'policy.__class__.pth'"),
    ],
)
def test_torch_names_sb3_follows_attribute_by_attribute_are_refused(saved, tmp_path, member, content, message):
    target = tmp_path / "model.zip"
    target.write_bytes(saved.read_bytes())
    _replace_member(target, member, _torch_bytes(content))
    with pytest.raises(UnsafePickleError, match=message):
        load(target)
    assert "data" not in vars(th.Tensor) and "data" not in vars(th.nn.Parameter)


def test_a_data_key_that_would_replace_a_method_of_the_algorithm_is_refused(saved, tmp_path):
    target = _with_payload(saved, tmp_path, "set_parameters", pickle.dumps(OrderedDict()))
    with pytest.raises(UnsafePickleError, match="would replace PPO.set_parameters"):
        load(target)
