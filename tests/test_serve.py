"""``sb3-microgrid serve``: the site controller's HTTP API. A request off the schema gets 422 naming the field, a
well-formed one always 200 (bad values and failures give the fallback, named), and the real server, driven over
HTTP for a simulated test day, scores as the exported policy in-process."""

import json
import math
import shutil
import socket
import subprocess
import sys
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from sb3_microgrid.baselines import OnnxController
from sb3_microgrid.cli import main
from sb3_microgrid.deploy import Decision, SiteController
from sb3_microgrid.deploy import controller as controller_module
from sb3_microgrid.deploy.env_site import EnvSite
from sb3_microgrid.deploy.serve import create_app
from sb3_microgrid.envs import EPISODE_KEYS, MicrogridEnv
from sb3_microgrid.evaluation import run_day
from sb3_microgrid.export import OnnxPolicy


@pytest.fixture(scope="module")
def body():
    """A clean request (JSON) of a test-day step with cars connected."""
    env = MicrogridEnv(split="test")
    obs, _ = env.reset(seed=0, options={"day": "2024-03-12"})
    for _ in range(11):
        obs = env.step([0.0] * 13)[0]
    return EnvSite(env).measurements(obs).model_dump(mode="json")


@pytest.fixture
def client(exported_policy):
    return TestClient(create_app(SiteController.from_export(exported_policy, clock=None)))


def _post(client, body) -> httpx.Response:
    # json.dumps writes NaN and Infinity as the tokens Python's json (and the server) read
    return client.post("/decide", content=json.dumps(body), headers={"content-type": "application/json"})


def test_clean_request_gets_the_policys_setpoints(client, body):
    response = _post(client, body)
    assert response.status_code == 200
    decision = Decision.model_validate(response.json())
    assert not decision.fallback and decision.errors == [] and len(decision.charger_kw) == 12


def _without(path):
    def mutate(body):
        *parents, last = path
        node = body
        for part in parents:
            node = node[part]
        del node[last]

    return mutate


def _setter(path, value):
    def mutate(body):
        *parents, last = path
        node = body
        for part in parents:
            node = node[part]
        node[last] = value

    return mutate


SCHEMA_ERRORS = {
    "missing battery": (_without(("battery",)), "battery", "Field required"),
    "missing SoC": (_without(("battery", "soc")), "battery.soc", "Field required"),
    "SoC as text": (_setter(("battery", "soc"), "0.5"), "battery.soc", "valid number"),
    "load as a list": (_setter(("history", 2, "load_kw"), [1.0]), "history[2].load_kw", "valid number"),
    "charger as text": (_setter(("evs", 0, "charger"), "3"), "evs[0].charger", "valid integer"),
    "timestamp not a time": (_setter(("timestamp",), "yesterday"), "timestamp", "datetime"),
    # Unix times, which pydantic's lax mode read as UTC and the controller then took for the site's wall clock
    "timestamp in epoch seconds": (_setter(("timestamp",), 1710241200), "timestamp", "allowed: an ISO 8601 time as text"),
    "timestamp in epoch milliseconds": (_setter(("timestamp",), 1710241200000), "timestamp", "a number is not read as a Unix time"),
    "timestamp as digits": (_setter(("timestamp",), "1710241200"), "timestamp", "allowed: an ISO 8601 time as text"),
    "departure in epoch seconds": (_setter(("evs", 0, "departure"), 1710262800.0), "evs[0].departure", "allowed: an ISO 8601 time as text"),
    "horizon_start as digits": (_setter(("horizon_start",), "1710201600"), "horizon_start", "allowed: an ISO 8601 date as text"),
    "unknown field": (_setter(("battery", "temperature_c"), 25.0), "battery.temperature_c", "Extra inputs"),
    "forecast not a list": (_setter(("forecast",), {"load_kw": 1.0}), "forecast", "valid list"),
}


@pytest.mark.parametrize("case", sorted(SCHEMA_ERRORS))
def test_request_off_the_schema_is_422_naming_the_field(client, body, case):
    mutate, field, message = SCHEMA_ERRORS[case]
    bad = json.loads(json.dumps(body))
    mutate(bad)
    response = _post(client, bad)
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert any(e["field"] == field and message in e["message"] for e in errors), errors


@pytest.mark.parametrize(
    "content, message",
    [
        (b"{not json", "JSON decode error"),
        # Python's JSON reader fails on these with other errors than a decode error; FastAPI answered 400 {"detail"}
        (b"[" * 100_000 + b"]" * 100_000, "RecursionError"),
        (b'{"timestamp": "\xff"}', "UnicodeDecodeError"),
    ],
    ids=["not JSON", "nested too deeply", "not UTF-8"],
)
def test_body_that_is_not_json_is_422(client, content, message):
    response = client.post("/decide", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "body" and message in error["message"]
    assert client.get("/nowhere").status_code == 404  # other HTTP errors keep FastAPI's answer


@pytest.mark.parametrize(
    "mutate, field",
    [
        (_setter(("battery", "soc"), math.nan), "battery.soc"),
        (_setter(("battery", "soc"), None), "battery.soc"),
        (_setter(("site", "pv_kw"), math.inf), "site.pv_kw"),
        (_setter(("battery", "soh"), 3.0), "battery.soh"),
        (_setter(("evs", 0, "charger"), 40), "evs[0].charger"),
        (lambda body: body["forecast"].pop(), "forecast"),
    ],
)
def test_bad_values_are_200_with_the_fallback_named(client, body, mutate, field):
    bad = json.loads(json.dumps(body))
    mutate(bad)
    response = _post(client, bad)
    assert response.status_code == 200
    decision = Decision.model_validate(response.json())
    assert decision.fallback and field in [e.field for e in decision.errors]
    assert all(math.isfinite(v) for v in [decision.battery_kw, *decision.charger_kw])
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["decisions"] == health["fallbacks"] == 1


class _Failing:
    def __init__(self, manifest) -> None:
        self.manifest = manifest

    def act(self, obs):
        raise RuntimeError("onnxruntime fell over")


def test_failures_inside_are_200_never_500(exported_policy, body, monkeypatch):
    policy = OnnxPolicy(exported_policy)
    controller = SiteController(_Failing(policy.manifest), MicrogridEnv(split="test").scenario, clock=None)
    client = TestClient(create_app(controller), raise_server_exceptions=False)
    response = _post(client, body)
    assert response.status_code == 200
    decision = Decision.model_validate(response.json())
    assert decision.fallback and decision.errors[0].field == "policy" and "fell over" in decision.errors[0].message

    def broken(*args):
        raise ZeroDivisionError("supervisor bug")

    monkeypatch.setattr(controller_module, "supervise", broken)
    response = _post(client, body)
    assert response.status_code == 200
    decision = Decision.model_validate(response.json())
    assert decision.errors[-1].field == "supervisor" and decision.battery_kw == 0.0 and set(decision.charger_kw) == {0.0}


def test_health_and_manifest(client, exported_policy):
    assert client.get("/health").json() == {"status": "ok", "algorithm": "ppo", "decisions": 0, "fallbacks": 0}
    assert client.get("/manifest").json() == OnnxPolicy(exported_policy).manifest


def test_a_deeply_nested_manifest_that_loads_is_served_not_500(exported_policy, tmp_path):
    """Nesting Python's JSON reader takes (under its recursion limit) but pydantic's serializer refused gave a 500."""
    deep = tmp_path / "deep"
    shutil.copytree(exported_policy, deep)
    manifest = json.loads((deep / "manifest.json").read_text())
    nested: list = []
    for _ in range(300):
        nested = [nested]
    manifest["kpis"]["validation"] = {"nested": nested}
    manifest["algorithm"] = nested  # not read by the controller; /health shows it
    (deep / "manifest.json").write_text(json.dumps(manifest))
    client = TestClient(create_app(SiteController.from_export(deep, clock=None)), raise_server_exceptions=False)
    response = client.get("/manifest")
    assert response.status_code == 200 and response.json() == manifest
    response = client.get("/health")
    assert response.status_code == 200 and response.json()["algorithm"] == nested


def test_serve_refuses_a_folder_it_cannot_run(exported_policy, tmp_path, capsys):
    assert main(["serve", str(tmp_path), "--port", "8000"]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    # nested beyond Python's recursion limit: a named error, not a RecursionError's traceback
    deep = tmp_path / "deep"
    shutil.copytree(exported_policy, deep)
    (deep / "scenario.yaml").write_text("[" * 20_000 + "]" * 20_000)
    assert main(["serve", str(deep), "--port", "8000"]) == 2
    assert "scenario.yaml: cannot read the scenario file (maximum recursion depth exceeded" in capsys.readouterr().err
    (deep / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    assert main(["serve", str(deep), "--port", "8000"]) == 2
    assert "manifest.json is not readable JSON: maximum recursion depth exceeded" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", str(tmp_path), "--port", "70000"])
    with pytest.raises(SystemExit):
        main(["serve", str(tmp_path), "--port", "8000", "--replay", "--max-age", "60"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(exported_policy, tmp_path):
    """``sb3-microgrid serve DIR --port P --replay`` in its own process; its base URL once it answers."""
    port = _free_port()
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "sb3_microgrid.cli", "serve", str(exported_policy), "--port", str(port), "--replay"], stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # a readiness wait (imports on a busy machine), not a measurement
        while True:
            assert process.poll() is None, f"the server exited:\n{log.read_text()}"
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"the server did not answer:\n{log.read_text()}"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_real_server_over_http_scores_as_the_policy_in_process(server, exported_policy):
    """The env plays the site for one test day: each step's measurements are posted to the real server, its
    setpoints applied as the equivalent action; the day's KPIs are those of the exported policy in-process."""
    day, seed = "2024-08-21", 5
    with httpx.Client(base_url=server) as http:

        def decide(measurements):
            response = http.post("/decide", content=measurements.model_dump_json(), headers={"content-type": "application/json"})
            assert response.status_code == 200, response.text
            return Decision.model_validate(response.json())

        metrics, decisions = EnvSite(MicrogridEnv(split="test")).play(day, seed, decide)
        assert http.get("/health").json()["decisions"] == len(decisions) == 24
    expected, trace = run_day(OnnxController(exported_policy), MicrogridEnv(split="test"), day, seed)
    assert not any(d.fallback for d in decisions)
    assert [d.action[0] for d in decisions] == pytest.approx(trace["action_battery"].tolist(), abs=1e-6)
    for key in set(EPISODE_KEYS) - {"safety_interventions"}:
        assert metrics[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-9), key
    assert sum(d.intervened for d in decisions) == expected["safety_interventions"]
