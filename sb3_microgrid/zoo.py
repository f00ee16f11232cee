"""Launcher for rl-baselines3-zoo with this package's algorithms.

The zoo fixes its ``--algo`` choices before any package loads, so it cannot select an algorithm of
ours. As the zoo documents for SBX, this launcher adds ours to ``rl_zoo3.ALGOS`` (and a sampler for
``-optimize``) and then calls the zoo's own ``train`` or ``enjoy``. The zoo's ``-optimize`` replaces
``policy_kwargs`` with the sampler's and would drop a custom features extractor (zoo issue #431): the
samplers here put the file's ``features_extractor_class``/``_kwargs`` back.

Usage::

    sb3-microgrid-zoo train --algo twin_ppo --env Microgrid-v0 --gym-packages sb3_microgrid --conf-file hyperparams/twin_ppo.yml
    sb3-microgrid-zoo enjoy --algo twin_ppo --env Microgrid-v0 --gym-packages sb3_microgrid -f logs/
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import yaml

from .hyperparams import parse_python, trusted_modules
from .algos import ALGOS

#: The zoo's sampler and converter reused for each of our algorithms.
SAMPLER_OF = {"twin_ppo": "ppo", "dyna_sac": "sac", "per_sac": "sac", "per_td3": "td3"}
KEPT_POLICY_KWARGS = ("features_extractor_class", "features_extractor_kwargs", "value_aggregation")


def _option(argv: list[str], *names: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg in names and i + 1 < len(argv):
            return argv[i + 1]
        for name in names:
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def _gym_packages(argv: list[str]) -> list[str]:
    """The values of ``--gym-packages A B ...`` (the zoo imports them, so their classes are trusted)."""
    if "--gym-packages" not in argv:
        return []
    values = argv[argv.index("--gym-packages") + 1 :]
    return values[: next((i for i, v in enumerate(values) if v.startswith("-")), len(values))]


def file_policy_kwargs(argv: list[str]) -> dict[str, Any]:
    """The ``policy_kwargs`` of the ``--env`` section of ``--conf-file`` (parsed without eval; classes
    from the toolkit's trusted packages and ``--gym-packages``)."""
    conf, env = _option(argv, "--conf-file", "-conf"), _option(argv, "--env")
    if not conf or not env or not Path(conf).exists():
        return {}
    section = (yaml.safe_load(Path(conf).read_text()) or {}).get(env) or {}
    kwargs = section.get("policy_kwargs", {})
    return parse_python(kwargs, "policy_kwargs", trusted_modules(_gym_packages(argv))) if isinstance(kwargs, str) else dict(kwargs)


def keep_extractor(sampler: Callable[..., dict[str, Any]], kept: dict[str, Any]) -> Callable[..., dict[str, Any]]:
    """Wrap a zoo sampler so the sampled ``policy_kwargs`` keep the file's extractor settings."""

    def sample(*args: Any, **kwargs: Any) -> dict[str, Any]:
        params = sampler(*args, **kwargs)
        params["policy_kwargs"] = {**params.get("policy_kwargs", {}), **kept}
        return params

    return sample


def register(argv: list[str]) -> None:
    """Add our algorithms and samplers to the zoo's registries."""
    import rl_zoo3
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER

    rl_zoo3.ALGOS.update({name: cls for name, cls in ALGOS.items() if name not in rl_zoo3.ALGOS})
    kept = {k: v for k, v in file_policy_kwargs(argv).items() if k in KEPT_POLICY_KWARGS}
    for name in ALGOS:
        base = SAMPLER_OF.get(name, name)
        if base in HYPERPARAMS_SAMPLER:
            HYPERPARAMS_SAMPLER[name] = keep_extractor(HYPERPARAMS_SAMPLER[base], kept) if kept else HYPERPARAMS_SAMPLER[base]
            HYPERPARAMS_CONVERTER.setdefault(name, HYPERPARAMS_CONVERTER[base])


def main(argv: list[str] | None = None) -> None:
    """``sb3-microgrid-zoo train|enjoy [zoo arguments]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("train", "enjoy"):
        raise SystemExit("usage: sb3-microgrid-zoo train|enjoy [rl_zoo3 arguments]")
    command, rest = argv[0], argv[1:]
    register(rest)
    sys.argv = [f"rl_zoo3.{command}", *rest]
    if command == "train":
        from rl_zoo3.train import train

        train()
    else:
        from rl_zoo3.enjoy import enjoy

        enjoy()


if __name__ == "__main__":
    main()
