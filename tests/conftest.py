import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def exported_policy(tmp_path_factory):
    """An export folder (``sb3-microgrid export``) of a PPO trained for 128 steps on ``campus``: a real
    ``policy.onnx``, ``manifest.json`` and ``scenario.yaml`` for the site controller's tests."""
    from stable_baselines3 import PPO

    from sb3_microgrid import MicrogridVecEnv
    from sb3_microgrid.export.onnx_export import export_model

    folder = tmp_path_factory.mktemp("export")
    model = PPO("MlpPolicy", MicrogridVecEnv(1, seed=0), n_steps=64, batch_size=64, seed=0, device="cpu", policy_kwargs={"net_arch": [32, 32]})
    model.learn(128).save(folder / "model.zip")
    export_model(folder / "model.zip", folder / "policy")
    return folder / "policy"
