"""`make webui`: LLaMA-Factory's web UI, started on loopback on what the tiny workflow built, driven through the
same gradio events its page calls: it opens on the base model (path and template filled in) with the registered
splits in its dataset list, and a run started in it comes back into conch as an experiment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from types import SimpleNamespace

import httpx
import psutil
import pytest
import yaml
from conftest import REPO, make_workdir, planned_jobs, snakemake, tiny_config

from conch.server.smoke import free_port

pytestmark = pytest.mark.slow


class Page:
    """The UI's page as a browser sees it: the component config, and events run through gradio's queue."""

    def __init__(self, url: str):
        self.url = url
        config = httpx.get(f"{url}/config", timeout=30).json()
        self.components = {c["id"]: c for c in config["components"]}
        self.events = {
            d["api_name"]: (i, d) for i, d in enumerate(config["dependencies"]) if d.get("api_name")
        }
        self.session = uuid.uuid4().hex

    def default(self, component: int):
        return self.components[component]["props"].get("value")

    def call(self, event: str, inputs: list, timeout: float = 600) -> dict:
        """{output component id: value or update} of one event."""
        index, spec = self.events[event]
        body = {"data": inputs, "fn_index": index, "session_hash": self.session, "trigger_id": None}
        httpx.post(f"{self.url}/gradio_api/queue/join", json=body, timeout=30).raise_for_status()
        data, params = None, {"session_hash": self.session}
        with httpx.stream("GET", f"{self.url}/gradio_api/queue/data", params=params, timeout=timeout) as s:
            for line in s.iter_lines():
                message = json.loads(line[5:]) if line.startswith("data:") else {}
                if message.get("msg") in ("process_generating", "process_completed"):
                    assert message.get("success", True), f"{event} failed: {message}"
                    data = message["output"].get("data") or data
                if message.get("msg") == "process_completed":
                    return dict(zip(spec["outputs"], data or [], strict=False))
        raise AssertionError(f"{event}: the event stream ended without a result")


@pytest.fixture(scope="module")
def webui(tmp_path_factory):
    """What `make webui` does, in a tiny workdir: the `webui` rule, then the launcher on a free port."""
    workdir = make_workdir(tmp_path_factory.mktemp("webui"), tiny_config())
    snakemake(workdir, "results/webui/launch.json")
    port, log = free_port(), workdir / "webui.log"
    command = [sys.executable, "-m", "conch.training.webui", "--port", str(port), "--no-browser"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while not _answers(url):
            assert proc.poll() is None, (
                f"the web UI exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            )
            assert time.monotonic() < deadline, (
                f"the web UI did not answer in 300 s:\n{log.read_text()[-3000:]}"
            )
            time.sleep(1)
        yield SimpleNamespace(workdir=workdir, port=port, proc=proc, page=Page(url))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # its training runs too: they share its session
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_it_listens_on_loopback_only(webui):
    listening = {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process(webui.proc.pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }
    assert listening == {("127.0.0.1", webui.port)}


def test_it_opens_on_the_base_model_and_lists_the_registered_splits(webui):
    page = webui.page
    # On load the page selects the last model of the user config: the workflow's base model...
    opened = page.call("resume", [])
    (model_name,) = page.events["get_model_info"][1]["inputs"]
    assert opened[model_name]["value"] == "conch-base"
    # ...whose path and chat template it then fills in.
    model_path, template = page.events["get_model_info"][1]["outputs"]
    filled = page.call("get_model_info", ["conch-base"])
    assert filled[model_path] == str(webui.workdir / "results/base_model/scratch/model")
    assert filled[template] == tiny_config()["template"]
    # Focusing the dataset list lists what the default data dir holds for the default stage (SFT).
    _, listing = page.events["list_datasets"]
    (dataset,) = listing["outputs"]
    listed = page.call("list_datasets", [page.default(c) for c in listing["inputs"]])[dataset]
    splits = json.loads((webui.workdir / "results/data/magic_conch/dataset_info.json").read_text())
    assert (
        [name for name, _ in listed["choices"]]
        == list(splits)
        == [f"magic_conch_{s}" for s in ("train", "val", "test")]
    )


def test_a_run_started_in_the_ui_comes_back_as_a_conch_experiment(webui):
    page = webui.page
    _, run = page.events["run_train"]
    # The form's fields by their English labels, as a person finds them (the Train tab's, not the Evaluate tab's).
    labels = {c: u.get("label") for c, u in page.call("change_lang", ["en"]).items() if isinstance(u, dict)}
    by_label = {labels[c]: c for c in run["inputs"] if labels.get(c)}
    form = {c: page.default(c) for c in run["inputs"]}
    form |= {
        c: u["value"] for c, u in page.call("resume", []).items() if isinstance(u, dict) and "value" in u
    }
    form |= page.call("get_model_info", ["conch-base"])
    # As a person would: pick the train split, and keep the run short and on the CPU.
    form |= {
        by_label["Dataset"]: ["magic_conch_train"],
        by_label["Epochs"]: "1.0",
        by_label["Max samples"]: "16",
        by_label["Batch size"]: 8,
        by_label["Gradient accumulation"]: 1,
        by_label["Compute type"]: "fp32",
        by_label["Extra arguments"]: '{"optim": "adamw_torch", "preprocessing_num_workers": 1}',
    }
    shown = page.call("run_train", [form[c] for c in run["inputs"]])
    runs = webui.workdir / "results/webui/saves/conch-base/lora"
    assert runs.is_dir(), f"no run started; the UI said: {shown}"
    (run_dir,) = runs.iterdir()
    assert (run_dir / "adapter_model.safetensors").exists(), (run_dir / "running_log.txt").read_text()[-3000:]
    # Its YAML, back in conch: the run's own keys as an experiment; the wiring keys stay conch's.
    back = subprocess.run(
        [sys.executable, "-m", "conch.training.webui", "to-config", str(run_dir / "training_args.yaml"), "--name", "ui"],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    experiment = yaml.safe_load(back.stdout)["experiments"]["ui"]
    assert experiment["max_samples"] == 16 and experiment["per_device_train_batch_size"] == 8
    assert not {"model_name_or_path", "dataset", "dataset_dir", "template", "output_dir"} & set(experiment)
    overlay = webui.workdir / "ui.yaml"
    overlay.write_text(back.stdout)
    assert planned_jobs(webui.workdir, "--configfile", str(overlay))["train_adapter"] == 2  # default and ui
