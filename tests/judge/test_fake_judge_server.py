"""The fake judge server the fault matrix and the two-node run lean on: its key, its log of answers,
its drawn faults, a fault switched while it runs, and a restart on the same port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

PAIR = '```json\n{"ground_truth": "laysan albatross", "prediction": "laysan albatross"}\n```'


def chat(url: str, key: str | None = None, prediction: str = "laysan albatross", client=httpx) -> httpx.Response:
    user = PAIR.replace('"prediction": "laysan albatross"', json.dumps({"prediction": prediction})[1:-1])
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": "fake-judge", "messages": [{"role": "user", "content": user}]}
    return client.post(f"{url}/chat/completions", json=body, headers=headers, timeout=5)


def test_a_key_is_required_on_v1_when_the_server_has_one(fake_judge):
    server = fake_judge(api_key="s3cret")
    assert chat(server.url).status_code == 401
    assert chat(server.url, key="wrong").status_code == 401
    assert httpx.get(f"{server.url}/models", timeout=5).status_code == 401
    answered = chat(server.url, key="s3cret")
    assert answered.status_code == 200
    assert answered.json()["choices"][0]["message"]["content"] == "specific"
    assert server.calls == 1  # refused requests are not chat requests the judge served


def test_every_request_is_logged_with_its_pair_and_outcome(fake_judge, tmp_path):
    log = tmp_path / "answers.jsonl"
    server = fake_judge(answers_log=str(log), fault="flaky:1")
    assert chat(server.url).status_code == 503
    assert chat(server.url, prediction="gull").status_code == 200
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines == [
        {"ground_truth": "laysan albatross", "prediction": "laysan albatross", "outcome": "503"},
        {"ground_truth": "laysan albatross", "prediction": "gull", "outcome": "label:wrong"},
    ]


def test_chance_faults_are_drawn_per_request_at_about_their_rate_and_repeat_with_the_seed(fake_judge):
    def outcomes(seed: int) -> list[int]:
        server = fake_judge(fault="chance:0.2:503,chance:0.1:bad_label", seed=seed)
        codes = []
        with httpx.Client() as client:  # one connection: the draws, not the handshakes, are under test
            for _ in range(200):
                reply = chat(server.url, client=client)
                label = reply.json()["choices"][0]["message"]["content"] if reply.status_code == 200 else ""
                codes.append(len(label) if label else reply.status_code)
        return codes

    first, again, other = outcomes(1), outcomes(1), outcomes(2)
    assert first == again and first != other
    failed = first.count(503)
    bad = first.count(len("probably specific"))
    assert 20 <= failed <= 62 and 6 <= bad <= 36, (failed, bad)  # 40 and 16 expected; > 4 sigma either way


def test_the_fault_of_a_running_server_can_be_switched_and_cleared(fake_judge):
    server = fake_judge()
    root = server.url.removesuffix("/v1")
    assert chat(server.url).status_code == 200
    assert httpx.post(f"{root}/fault", json={"fault": "status:503"}, timeout=5).json() == {"fault": "status:503"}
    assert chat(server.url).status_code == 503
    httpx.post(f"{root}/fault", json={"fault": None}, timeout=5)
    assert chat(server.url).status_code == 200


def test_an_only_fault_hits_the_requests_that_mention_its_text(fake_judge):
    server = fake_judge(fault="only:gull:status:503")
    assert chat(server.url, prediction="gull").status_code == 503
    assert chat(server.url, prediction="tern").status_code == 200


def start_process(port: int, log, env) -> tuple[subprocess.Popen, int | None]:
    """The server as its own process; its port, or None if it could not listen (and has exited)."""
    command = [sys.executable, "-u", "-m", "speciarl_verl.offline_fixtures.fake_judge_server", "--port", str(port)]
    command += ["--api-key-env", "JUDGE_KEY", "--answers-log", str(log)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    first = process.stdout.readline()
    if not first.startswith("PORT "):
        process.wait(10)
        return process, None
    return process, int(first.split()[1])


def test_a_killed_server_restarts_on_its_port_and_its_log_keeps_every_answer(tmp_path):
    env = {**os.environ, "JUDGE_KEY": "k3y"}
    log = tmp_path / "answers.jsonl"
    first, port = start_process(0, log, env)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        assert chat(url, key="k3y").status_code == 200
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    with pytest.raises(httpx.ConnectError):
        chat(url, key="k3y")
    deadline = time.monotonic() + 20
    while True:  # the kernel may hold the port a moment after the kill
        second, again = start_process(port, log, env)
        if again == port or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    try:
        assert again == port
        assert chat(url, key="k3y", prediction="gull").status_code == 200
    finally:
        second.terminate()
        second.wait(10)
    outcomes = [json.loads(line)["outcome"] for line in log.read_text().splitlines()]
    assert outcomes == ["label:specific", "label:wrong"]


def test_the_key_variable_must_be_set():
    env = {k: v for k, v in os.environ.items() if k != "NO_SUCH_KEY"}
    result = subprocess.run(
        [sys.executable, "-m", "speciarl_verl.offline_fixtures.fake_judge_server", "--api-key-env", "NO_SUCH_KEY"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2 and "NO_SUCH_KEY" in result.stderr
