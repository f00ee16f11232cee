"""MicrogridVecEnv rejects malformed input with named errors and stays usable afterwards."""

import re

import numpy as np
import pandas as pd
import pytest

from sb3_microgrid.envs import MicrogridVecEnv


@pytest.fixture(scope="module")
def venv() -> MicrogridVecEnv:
    return MicrogridVecEnv(4, seed=0)


@pytest.mark.parametrize("shape", [(4,), (4, 12), (4, 14), (13, 4), (8, 13), (1, 13), (13,), (1, 4, 13), ()])
def test_wrong_action_shape_raises_and_leaves_the_state(venv, shape):
    venv.reset()
    before = venv.core.state.copy()
    with pytest.raises(ValueError, match=re.escape(f"shape (4, 13), got shape {shape}")):
        venv.step(np.zeros(shape))
    assert venv.core.t == 0
    np.testing.assert_array_equal(venv.core.state, before)
    venv.step(np.zeros((4, 13)))  # still usable
    assert venv.core.t == 1


def test_a_ragged_action_list_names_the_shape(venv):
    venv.reset()
    with pytest.raises(ValueError, match=r"action must be an array of real numbers of shape \(4, 13\): setting an array element"):
        venv.step([[0.0] * 13] * 3 + [[0.0] * 12])


@pytest.mark.parametrize("action", [np.full((4, 13), "x"), np.full((4, 13), "0.5"), np.full((4, 13), 0.5 + 1j), np.ones((4, 13), dtype=bool)],
                         ids=["text", "numeric text", "complex", "bool"])  # fmt: skip
def test_non_numeric_action_raises(venv, action):
    """numpy would parse '0.5', read True as 1 and drop an imaginary part without a word."""
    venv.reset()
    with pytest.raises(ValueError, match=rf"action must be an array of real numbers of shape \(4, 13\), got dtype {action.dtype}"):
        venv.step(action)
    assert venv.core.t == 0


@pytest.mark.parametrize("entry", [None, True, np.True_, np.array(True)], ids=["None", "True", "numpy True", "0-d bool"])
def test_an_entry_that_is_not_a_real_number_raises(venv, entry):
    """In a list of floats numpy reads True as 1.0 (a full charge) without a word: every entry is checked."""
    venv.reset()
    action = [[0.0] * 13 for _ in range(4)]
    action[2][0] = entry
    with pytest.raises(ValueError, match=r"action must be an array of real numbers of shape \(4, 13\), got an entry"):
        venv.step(action)
    with pytest.raises(ValueError, match=r"got an entry None"):
        venv.step(np.full((4, 13), None))
    assert venv.core.t == 0


def test_huge_integers_are_projected_and_counted(venv):
    """Python ints beyond int64 (numpy makes them objects) and beyond float range are out-of-box values, not errors."""
    venv.reset()
    action = [[0.0] * 13 for _ in range(4)]
    action[1][0], action[2][0], action[3][0] = 10**20, 10**400, np.array(1.0)
    _, _, _, infos = venv.step(action)
    assert [info["safety_interventions"] for info in infos] == [0.0, 1.0, 1.0, 0.0]
    assert infos[1]["battery_kwh"] == infos[2]["battery_kwh"] == infos[3]["battery_kwh"] > 0


@pytest.mark.parametrize("n_envs", [0, -1, 2.5, "4", True, None])
def test_bad_n_envs_named_error(n_envs):
    with pytest.raises(ValueError, match=r"n_envs must be an integer >= 1, got"):
        MicrogridVecEnv(n_envs)


def test_numpy_integer_n_envs_accepted():
    assert MicrogridVecEnv(np.int64(2), seed=0).reset().shape[0] == 2


@pytest.mark.parametrize(
    ("day", "message"),
    [("1999-01-01", "not a start day of split 'train'"), ("garbage", "day must be a date"), ("", "day must be a date"),
     ("NaT", "day must be a date"), (float("nan"), "day must be a date"), (pd.NaT, "day must be a date"),
     ("2016-03-01T00:00+05:30", "day must be a local date without a time zone")],
)  # fmt: skip
def test_failed_set_options_day_does_not_stick(day, message):
    venv = MicrogridVecEnv(2, seed=0)
    venv.reset()
    venv.set_options({"day": day})
    with pytest.raises(ValueError, match=message):
        venv.reset()
    venv.reset()  # the bad day applied to one reset only
    venv.set_options({"day": "2016-03-01"})
    venv.reset()
    assert [info["date"] for info in venv.reset_infos] == ["2016-03-01", "2016-03-01"]


def test_failed_reset_leaves_the_core_as_it_was():
    """A bad day for microgrid 1 must not half-reset microgrid 0 (its pending difficulty, its episode)."""
    venv = MicrogridVecEnv(2, seed=0)
    venv.reset()
    venv.step(np.zeros((2, 13)))
    state, dates = venv.core.state.copy(), venv.core.episode_dates()
    venv.env_method("set_difficulty", ev_count=0)
    venv.set_options([{"day": "2016-03-01"}, {"day": "1999-01-01"}])
    with pytest.raises(ValueError, match="not a start day"):
        venv.reset()
    assert [d.ev_count for d in venv.get_attr("difficulty")] == [None, None]
    assert venv.core.t == 1 and venv.core.episode_dates() == dates
    np.testing.assert_array_equal(venv.core.state, state)
    venv.reset()
    assert [d.ev_count for d in venv.get_attr("difficulty")] == [0, 0]


def test_unknown_reset_options_are_named_by_both_faces():
    from sb3_microgrid.envs import MicrogridEnv

    env = MicrogridEnv(split="test")
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(seed=0, options={"dya": "2024-03-05"})
    venv = MicrogridVecEnv(2, split="test", seed=0)
    venv.set_options({"dya": "2024-03-05"})
    with pytest.raises(ValueError, match="unknown reset option"):
        venv.reset()
    assert venv.reset().shape[0] == 2  # the bad option applied to one reset only


@pytest.mark.parametrize("n", [1, 3])
def test_a_list_of_options_of_the_wrong_length_is_refused_when_set(n):
    """A short list failed inside the reset after microgrid 0's draws; a long one was cut without a word."""
    venv = MicrogridVecEnv(2, seed=0)
    with pytest.raises(ValueError, match=f"a list of 2 dicts \\(one per microgrid\\), got a list of {n}"):
        venv.set_options([{"day": "2016-03-01"}] * n)
    venv.reset()
    assert len(venv.reset_infos) == 2


def test_a_list_of_0d_tensors_or_arrays_is_an_action(venv):
    """list(tensor) gives 0-d tensors: numpy read them before the entry check, and must still."""
    import torch

    venv.reset()
    rows = [list(torch.full((13,), 0.5)), list(np.full(13, 0.5, dtype=np.float32)), [0.5] * 13, list(torch.zeros(13))]
    _, _, _, infos = venv.step(rows)
    assert infos[0]["battery_kwh"] == infos[1]["battery_kwh"] == infos[2]["battery_kwh"] > 0 == infos[3]["battery_kwh"]
