"""The cluster stack (docker-compose.yml, Dockerfile, .env.example, docker/), checked without a
Docker engine: the compose file is parsed and interpolated with .env.example the way Compose
does it, the helper scripts are run natively, and ``docker compose config`` validates the
file wherever a Compose client is installed."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import select
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.py"
PG_INIT = ROOT / "docker" / "postgres-init" / "10-create-optuna-db.sh"
MINIO_INIT = ROOT / "docker" / "minio-init.sh"

SERVICES = {"postgres", "minio", "minio-init", "mlflow", "optuna-dashboard", "worker"}
SECRETS = ("POSTGRES_USER", "POSTGRES_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD")
SECRET_KEY = re.compile(r"PASSWORD|SECRET|USER|ACCESS_KEY|TOKEN|CREDENTIAL", re.I)
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}; "$$" escapes "$".
VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
WHOLE_REFERENCE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:?[-?][^}]*)?\}$")


# -- helpers: parsing and interpolating like Compose ------------------------------------------


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
        env[key.strip()] = value.strip()
    return env


def interpolate(value, env: dict[str, str]):
    """Compose's variable substitution, applied to every string of a parsed file."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3)
        present = name in env
        empty = not env.get(name)
        if op in (":-", "-"):
            use_default = empty if op == ":-" else not present
            return arg if use_default else env[name]
        if op in (":?", "?"):
            if (empty if op == ":?" else not present):
                raise KeyError(f"required variable {name} is missing: {arg}")
            return env[name]
        return env.get(name, "")

    return VARIABLE.sub(substitute, value)


def variables_used(text: str) -> dict[str, set[str]]:
    """Every variable the text references, with the operators it is used with ('' for none)."""
    used: dict[str, set[str]] = {}
    for m in VARIABLE.finditer(text):
        if m.group(1):
            used.setdefault(m.group(1), set()).add(m.group(2) or "")
    return used


@pytest.fixture(scope="module")
def raw() -> dict:
    return load_compose()


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def stack(raw, example_env) -> dict:
    """The compose file as Compose sees it with .env.example copied to .env."""
    return interpolate(raw, example_env)


def command_of(service: dict) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def option(argv: list[str], name: str) -> str:
    assert name in argv, f"{name} missing from {argv}"
    return argv[argv.index(name) + 1]


def conditions(service: dict) -> dict[str, str]:
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def port_problems(spec) -> list[str]:
    """Why a `ports:` entry would publish on more than 127.0.0.1 (empty when it does not)."""
    if isinstance(spec, dict):
        if spec.get("host_ip") != "127.0.0.1":
            return [f"{spec}: host_ip is not 127.0.0.1"]
        if not spec.get("published"):
            return [f"{spec}: no fixed published port"]
        return []
    text = str(spec)
    if not re.fullmatch(r"127\.0\.0\.1:[^:]+:\d+(-\d+)?(/(tcp|udp))?", text):
        return [f"{text!r}: not 127.0.0.1:HOST:CONTAINER"]
    return []


def credential_problems(compose: dict) -> list[str]:
    """Secret-looking values that are written into the file rather than taken from ${...}."""
    problems = []

    def check_url(where: str, text: str) -> None:
        for url in re.findall(r"[a-z][a-z0-9+.-]*://\S+", text):
            netloc = url.split("://", 1)[1].split("/", 1)[0]
            if "@" not in netloc:
                continue
            userinfo = netloc.rsplit("@", 1)[0]
            # Split "${USER:?e}:${PASS:?e}" on the colon between the two references.
            parts = re.split(r"(?<=\}):(?=\$\{)", userinfo)
            if not all(WHOLE_REFERENCE.match(p) for p in parts):
                problems.append(f"{where}: credentials in URL {url!r}")

    def walk(where: str, value) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                if isinstance(sub, (str, int, float)) and SECRET_KEY.search(str(key)):
                    if not WHOLE_REFERENCE.match(str(sub)):
                        problems.append(f"{where}.{key}: {sub!r} is not a ${{...}} reference")
                walk(f"{where}.{key}", sub)
        elif isinstance(value, list):
            for i, sub in enumerate(value):
                if isinstance(sub, str) and "=" in sub and SECRET_KEY.search(sub.split("=", 1)[0]):
                    if not WHOLE_REFERENCE.match(sub.split("=", 1)[1]):
                        problems.append(f"{where}[{i}]: {sub!r} is not a ${{...}} reference")
                walk(f"{where}[{i}]", sub)
        elif isinstance(value, str):
            check_url(where, value)

    walk("compose", compose)
    return problems


def storage_url(stack: dict) -> str:
    return option(command_of(stack["services"]["worker"]), "--storage")


# -- services, ports, health, order --------------------------------------------------------------


def test_every_service_of_the_stack_is_defined(raw):
    assert SERVICES <= set(raw["services"]), SERVICES - set(raw["services"])


def test_published_ports_bind_loopback_only(raw, stack):
    problems = []
    for name, service in stack["services"].items():
        assert service.get("network_mode") != "host", f"{name} would bypass port bindings"
        for spec in service.get("ports", []):
            problems += [f"{name}: {p}" for p in port_problems(spec)]
    assert not problems, problems
    # The UIs and the study store are reachable from this host at all.
    for name, container_port in [("postgres", 5432), ("mlflow", 5000),
                                 ("optuna-dashboard", 8080), ("minio", 9001)]:
        targets = [int(str(p).split(":")[-1].split("/")[0]) for p in stack["services"][name]["ports"]]
        assert container_port in targets, f"{name} does not publish {container_port}"


@pytest.mark.parametrize("spec", ["5000:5000", "5000", "0.0.0.0:5000:5000", "[::]:5000:5000",
                                  {"target": 5000, "published": 5000},
                                  {"target": 5000, "published": 5000, "host_ip": "0.0.0.0"}])
def test_port_check_rejects_ports_open_beyond_loopback(spec):
    assert port_problems(spec)


def test_healthchecks_on_postgres_minio_and_mlflow(stack):
    services = stack["services"]
    tests = {}
    for name in ("postgres", "minio", "mlflow"):
        health = services[name].get("healthcheck")
        assert health and not health.get("disable"), f"{name} has no healthcheck"
        test = health["test"]
        assert test not in (["NONE"], "NONE")
        tests[name] = " ".join(test) if isinstance(test, list) else test
    assert "pg_isready" in tests["postgres"]
    assert "mc ready local" in tests["minio"] or "/minio/health/live" in tests["minio"]
    assert "/health" in tests["mlflow"] and ":5000" in tests["mlflow"]


def test_start_order_waits_for_health_and_for_the_bucket(stack):
    services = stack["services"]
    assert conditions(services["minio-init"]) == {"minio": "service_healthy"}
    mlflow = conditions(services["mlflow"])
    assert mlflow["postgres"] == "service_healthy"
    assert mlflow["minio-init"] == "service_completed_successfully"
    worker = conditions(services["worker"])
    assert worker["mlflow"] == "service_healthy"
    assert worker["postgres"] == "service_healthy"
    assert conditions(services["optuna-dashboard"])["postgres"] == "service_healthy"
    # A service waited on as healthy must define a healthcheck, or it never becomes healthy.
    for name, service in services.items():
        for dep, condition in conditions(service).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if condition == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep}'s health"
    assert services["minio-init"].get("restart", "no") == "no"


# -- MLflow, Optuna, MinIO wiring -------------------------------------------------------------


def test_mlflow_server_uses_postgres_backend_and_serves_s3_artifacts(stack, example_env):
    mlflow = stack["services"]["mlflow"]
    argv = command_of(mlflow)
    assert argv[:2] == ["mlflow", "server"]
    assert option(argv, "--host") == "0.0.0.0" and option(argv, "--port") == "5000"
    backend = urlsplit(option(argv, "--backend-store-uri"))
    assert backend.scheme.startswith("postgresql")
    assert (backend.hostname, backend.port) == ("postgres", 5432)
    assert backend.path == "/" + example_env["MLFLOW_DB"]
    assert "--serve-artifacts" in argv and "--no-serve-artifacts" not in argv
    destination = option(argv, "--artifacts-destination")
    assert destination == "s3://" + stack["services"]["minio-init"]["environment"]["MLFLOW_BUCKET"]
    # Workers reach the server as http://mlflow:5000: MLflow >= 3.5 answers 403 to Host
    # headers it does not allow.
    assert "mlflow:5000" in option(argv, "--allowed-hosts").split(",")
    env = mlflow["environment"]
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["AWS_ACCESS_KEY_ID"] == example_env["MINIO_ROOT_USER"]
    assert env["AWS_SECRET_ACCESS_KEY"] == example_env["MINIO_ROOT_PASSWORD"]


def test_mlflow_and_optuna_have_separate_databases_on_one_server(stack, example_env, raw):
    mlflow_db = urlsplit(option(command_of(stack["services"]["mlflow"]), "--backend-store-uri"))
    optuna_db = urlsplit(storage_url(stack))
    assert mlflow_db.hostname == optuna_db.hostname == "postgres"
    assert mlflow_db.path != optuna_db.path
    postgres = stack["services"]["postgres"]
    # The image creates POSTGRES_DB; the init script creates OPTUNA_DB.
    assert "/" + postgres["environment"]["POSTGRES_DB"] == mlflow_db.path
    assert "/" + postgres["environment"]["OPTUNA_DB"] == optuna_db.path
    mounts = [str(v) for v in raw["services"]["postgres"]["volumes"]]
    assert any(m.startswith("./docker/postgres-init:/docker-entrypoint-initdb.d") for m in mounts)
    assert "OPTUNA_DB" in PG_INIT.read_text()
    for name in ("mlflow", "worker"):
        user = urlsplit(option(command_of(stack["services"][name]),
                               "--backend-store-uri" if name == "mlflow" else "--storage"))
        assert (user.username, user.password) == (example_env["POSTGRES_USER"],
                                                  example_env["POSTGRES_PASSWORD"])


def test_optuna_dashboard_reads_the_study_store(stack):
    dashboard = stack["services"]["optuna-dashboard"]
    assert dashboard["image"].startswith("ghcr.io/optuna/optuna-dashboard:")
    url = urlsplit(command_of(dashboard)[0])
    worker = urlsplit(storage_url(stack))
    # The image ships psycopg2 only, so the driver is named explicitly.
    assert url.scheme == "postgresql+psycopg2"
    assert (url.hostname, url.port, url.path) == (worker.hostname, worker.port, worker.path)


# -- the worker --------------------------------------------------------------------------------


def test_worker_builds_from_the_repo_dockerfile_and_reserves_a_gpu(raw, stack):
    worker = raw["services"]["worker"]
    build = worker["build"]
    build = {"context": build} if isinstance(build, str) else build
    assert (ROOT / build["context"]).resolve() == ROOT
    assert build.get("dockerfile", "Dockerfile") == "Dockerfile" and DOCKERFILE.is_file()
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", [])
               for d in devices), devices
    assert "container_name" not in worker, "a fixed name breaks --scale worker=N"
    assert not worker.get("ports"), "replicas cannot share published ports"


def test_worker_command_joins_the_shared_study(stack, example_env):
    worker = stack["services"]["worker"]
    argv = command_of(worker)
    assert argv[:2] == ["harness", "run"]
    assert (ROOT / argv[2]).is_file(), f"the default study {argv[2]} is not in the repo"
    storage = option(argv, "--storage")
    assert storage.startswith("postgresql")
    assert urlsplit(storage).path == "/" + example_env["OPTUNA_DB"]
    assert option(argv, "--tracking-uri") == "http://mlflow:5000"
    assert worker["environment"]["HARNESS_DATA"] == "/data"
    assert any(str(v).split(":")[1] == "/data" for v in worker["volumes"])
    assert worker["environment"]["OPTUNA_STORAGE"] == storage


def test_no_service_has_a_fixed_container_name(raw):
    assert [n for n, s in raw["services"].items() if "container_name" in s] == []


# -- credentials and .env -------------------------------------------------------------------------


def test_no_credentials_are_written_into_the_compose_file(raw, example_env):
    assert credential_problems(raw) == []
    text = COMPOSE.read_text()
    for key in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD"):
        assert example_env[key] not in text, f"the example value of {key} is in the file"


@pytest.mark.parametrize("bad", [
    {"services": {"db": {"environment": {"POSTGRES_PASSWORD": "hunter22"}}}},
    {"services": {"db": {"environment": ["MINIO_ROOT_PASSWORD=hunter22"]}}},
    {"services": {"w": {"command": ["run", "--storage", "postgresql://u:hunter22@db/x"]}}},
    {"services": {"w": {"command": "run --storage postgresql://${U}:hunter22@db/x"}}},
])
def test_credential_check_catches_literal_secrets(bad):
    assert credential_problems(bad)


def test_env_example_defines_every_variable_and_secrets_are_required(example_env):
    used = variables_used(COMPOSE.read_text())
    assert set(used) - set(example_env) == set(), "not in .env.example"
    for key in SECRETS:
        assert used.get(key) == {":?"}, f"{key} must be required: ${{{key}:?...}}"
        assert example_env[key], f".env.example leaves {key} empty"
    assert len(example_env["MINIO_ROOT_PASSWORD"]) >= 8, "MinIO refuses shorter passwords"


def test_defaults_in_the_compose_file_are_the_example_values(example_env):
    """A .env without the optional settings gives the same stack as .env.example."""
    for m in VARIABLE.finditer(COMPOSE.read_text()):
        if m.group(2) in (":-", "-"):
            assert m.group(3) == example_env[m.group(1)], m.group(1)


def test_compose_refuses_to_start_without_a_secret(raw, example_env):
    for key in SECRETS:
        env = {k: v for k, v in example_env.items() if k != key}
        with pytest.raises(KeyError, match=key):
            interpolate(raw, env)


def test_env_is_git_ignored_and_the_example_is_not():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")

    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0

    assert ignored(".env")
    assert not ignored(".env.example")


# -- images ---------------------------------------------------------------------------------------


def test_images_are_pinned(raw):
    for name, service in raw["services"].items():
        if "image" not in service:
            assert "build" in service, f"{name} has neither image nor build"
            continue
        image = service["image"]
        last = image.split("/")[-1]
        tag = last.split(":", 1)[1] if ":" in last else ""
        assert tag and tag != "latest", f"{name}: {image} is not pinned"
    for name in ("minio", "minio-init"):
        # MinIO deleted its Docker Hub repositories; quay.io keeps the released images.
        assert raw["services"][name]["image"].startswith("quay.io/minio/")


def test_mlflow_image_tag_matches_its_pinned_version(raw):
    dockerfile = (ROOT / raw["services"]["mlflow"]["build"]["context"] / "Dockerfile").read_text()
    version = re.search(r"^ARG MLFLOW_VERSION=(\S+)$", dockerfile, re.M).group(1)
    assert raw["services"]["mlflow"]["image"].endswith(":" + version)
    assert re.search(r'"mlflow==\$\{MLFLOW_VERSION\}"', dockerfile)
    assert "boto3==" in dockerfile and "psycopg[binary]==" in dockerfile
    backend = option(command_of(raw["services"]["mlflow"]), "--backend-store-uri")
    assert backend.startswith("postgresql+psycopg://"), "name the driver the image installs"


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_installs_the_package_and_runs_through_the_entrypoint():
    instructions = dockerfile_instructions()
    base = [rest for word, rest in instructions if word == "FROM"]
    assert base and all(":" in b and not b.endswith(":latest") for b in base), base
    runs = " ".join(rest for word, rest in instructions if word == "RUN")
    assert re.search(r"pip install (--no-deps )?\.(\s|$)", runs), "the package is not installed"
    copies = [rest.split() for word, rest in instructions if word == "COPY"]
    sources = {src for c in copies for src in c[:-1] if not src.startswith("--")}
    assert {"pyproject.toml", "harness", "studies", "docker/entrypoint.py"} <= sources
    env = " ".join(rest for word, rest in instructions if word == "ENV")
    assert "HARNESS_DATA=/data" in env
    entry = json.loads(dict(instructions)["ENTRYPOINT"])
    cmd = json.loads(dict(instructions)["CMD"])
    assert entry[0] == "python" and Path(entry[1]).name == "harness-entrypoint.py"
    assert any(c[-1] == entry[1] and c[-2] == "docker/entrypoint.py" for c in copies)
    assert cmd[0] == "harness"
    assert dict(instructions)["WORKDIR"] == "/app"


def test_dockerignore_keeps_secrets_out_and_what_the_image_needs_in():
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]

    def excluded(path: str) -> bool:
        result = False
        for p in patterns:
            negate, p = p.startswith("!"), p.lstrip("!")
            if fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path.split("/")[0], p):
                result = not negate
        return result

    for path in (".env", ".git", ".venv", "mlruns", "data", "tuned"):
        assert excluded(path), f"{path} would be sent to the Docker daemon"
    copies = [rest.split()[:-1] for word, rest in dockerfile_instructions() if word == "COPY"]
    for sources in copies:
        for src in sources:
            if not src.startswith("--"):
                assert not excluded(src), f"the Dockerfile copies {src}, .dockerignore drops it"
                assert (ROOT / src).exists(), src


# -- helper scripts -------------------------------------------------------------------------------


def test_helper_scripts_parse_and_the_init_script_is_executable():
    subprocess.run(["sh", "-n", str(MINIO_INIT)], check=True)
    subprocess.run(["bash", "-n", str(PG_INIT)], check=True)
    assert os.access(PG_INIT, os.X_OK)
    text = MINIO_INIT.read_text()
    assert "mc mb --ignore-existing" in text and "MLFLOW_BUCKET" in text


def run_entrypoint(tmp_path: Path, *, gpus: int, per_gpu: int = 1, extra_env=None,
                   hold: bool = True, trains: bool = True) -> subprocess.Popen:
    """The entrypoint running a command that prints its GPU and, with ``hold``, waits for
    stdin to close (so the slot stays taken meanwhile). With ``trains`` the command line
    ends in "harness run", which is what the entrypoint pins."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("CUDA_VISIBLE_DEVICES", "OPTUNA_STORAGE")}
    env.update(HARNESS_GPU_COUNT=str(gpus), WORKERS_PER_GPU=str(per_gpu),
               HARNESS_GPU_SLOTS_DIR=str(tmp_path / "slots"), HARNESS_GPU_WAIT_S="0.1",
               **(extra_env or {}))
    script = ("import os, sys; print(os.environ.get('CUDA_VISIBLE_DEVICES', '-'), "
              "os.environ.get('HARNESS_GPU_SLOT', '-'), flush=True)"
              + ("; sys.stdin.read()" if hold else ""))
    argv = [sys.executable, str(ENTRYPOINT), sys.executable, "-c", script]
    return subprocess.Popen(argv + (["harness", "run"] if trains else []),
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def first_line(proc: subprocess.Popen, timeout: float = 30) -> list[str]:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no output within {timeout} s"
    line = proc.stdout.readline()
    assert line, proc.stderr.read()
    return line.split()


def release(*procs: subprocess.Popen) -> None:
    for proc in procs:
        proc.stdin.close()
        proc.wait(timeout=30)


def test_entrypoint_gives_each_replica_its_own_gpu(tmp_path):
    a, b = run_entrypoint(tmp_path, gpus=2), run_entrypoint(tmp_path, gpus=2)
    c = None
    try:
        gpu_a, gpu_b = first_line(a)[0], first_line(b)[0]
        assert {gpu_a, gpu_b} == {"0", "1"}
        # A third replica waits while both slots are held ...
        c = run_entrypoint(tmp_path, gpus=2)
        assert select.select([c.stdout], [], [], 1.5)[0] == [] and c.poll() is None
        # ... and takes the GPU that the first one gives back when it exits.
        release(a)
        assert first_line(c)[0] == gpu_a
        release(b, c)
    finally:
        for proc in (a, b, c):
            if proc is not None and proc.poll() is None:
                proc.kill()


def test_entrypoint_shares_gpus_when_asked_and_leaves_user_choices_alone(tmp_path):
    procs = [run_entrypoint(tmp_path, gpus=2, per_gpu=2) for _ in range(4)]
    try:
        assert sorted(first_line(p)[0] for p in procs) == ["0", "0", "1", "1"]
    finally:
        release(*procs)
    preset = run_entrypoint(tmp_path / "x", gpus=2, extra_env={"CUDA_VISIBLE_DEVICES": "3"},
                            hold=False)
    assert first_line(preset) == ["3", "-"]
    no_gpu = run_entrypoint(tmp_path / "y", gpus=0, hold=False)
    assert first_line(no_gpu) == ["-", "-"]
    release(preset, no_gpu)


def test_entrypoint_pins_only_commands_that_train(tmp_path):
    busy, forced = run_entrypoint(tmp_path, gpus=1), None
    try:
        assert first_line(busy)[0] == "0"
        # `harness status` or a shell must not wait for the one GPU a worker holds.
        other = run_entrypoint(tmp_path, gpus=1, hold=False, trains=False)
        assert first_line(other, timeout=10) == ["-", "-"]
        release(other)
        forced = run_entrypoint(tmp_path, gpus=1, trains=False, extra_env={"HARNESS_GPU_PIN": "1"})
        assert select.select([forced.stdout], [], [], 1.0)[0] == []  # waits for the GPU
        release(busy)
        assert first_line(forced)[0] == "0"
        release(forced)
    finally:
        for proc in (busy, forced):
            if proc is not None and proc.poll() is None:
                proc.kill()


PG_BIN = Path("/usr/lib/postgresql/15/bin")
needs_postgres = pytest.mark.skipif(not (PG_BIN / "initdb").exists(),
                                    reason="PostgreSQL 15 server binaries not installed")


@needs_postgres
def test_postgres_init_script_creates_the_study_database_once(postgres):
    import psycopg

    env = {**os.environ, "PATH": f"{PG_BIN}:{os.environ['PATH']}",
           "PGHOST": urlsplit(postgres).hostname, "PGPORT": str(urlsplit(postgres).port),
           "PGPASSWORD": urlsplit(postgres).password or "",
           "POSTGRES_USER": "postgres", "POSTGRES_DB": "postgres", "OPTUNA_DB": "compose-optuna"}
    for _ in range(2):  # idempotent
        subprocess.run(["bash", str(PG_INIT)], env=env, check=True, capture_output=True)
    with psycopg.connect(f"{postgres}/postgres") as conn:
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    assert "compose-optuna" in names
    missing = {k: v for k, v in env.items() if k != "OPTUNA_DB"}
    assert subprocess.run(["bash", str(PG_INIT)], env=missing, capture_output=True).returncode


@needs_postgres
def test_entrypoint_prepares_the_study_store_for_replicas_starting_together(postgres):
    import psycopg
    from harness_testing import create_database

    # Optuna's CREATE TABLEs race when several replicas start on an empty database.
    url = create_database(postgres, "compose_race")
    env = {**os.environ, "OPTUNA_STORAGE": url, "HARNESS_GPU_COUNT": "0"}
    procs = [subprocess.Popen([sys.executable, str(ENTRYPOINT), sys.executable, "-c", "print('ran')"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    results = [(p.communicate(timeout=120), p.returncode) for p in procs]
    for (out, err), code in results:
        assert (code, out.strip()) == (0, "ran"), err
        assert "could not prepare" not in err, err
    with psycopg.connect(url) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"studies", "trials", "version_info"} <= tables


# -- Docker Compose itself, where a client is installed -----------------------------------------


def compose_client() -> list[str] | None:
    """`docker compose` (v2 plugin) or `docker-compose`; `config` needs no engine."""
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) is None:
            continue
        if subprocess.run([*cmd, "version"], capture_output=True).returncode == 0:
            return cmd
    return None


def test_docker_compose_config_validates_the_file(tmp_path, example_env):
    client = compose_client()
    if client is None:
        pytest.skip("no Docker Compose client (`docker compose version` fails)")
    clean = {k: v for k, v in os.environ.items() if k not in example_env}

    def config(env_file: Path, *files: str) -> subprocess.CompletedProcess:
        args = [a for f in (files or ("docker-compose.yml",)) for a in ("-f", f)]
        return subprocess.run([*client, "--env-file", str(env_file), *args, "config", "-q"],
                              cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60)

    ok = config(ENV_EXAMPLE)
    assert ok.returncode == 0, ok.stderr
    without = tmp_path / "env"
    without.write_text("".join(f"{k}={v}\n" for k, v in example_env.items()
                               if k != "POSTGRES_PASSWORD"))
    refused = config(without)
    assert refused.returncode != 0 and "POSTGRES_PASSWORD" in refused.stderr + refused.stdout
    if client == ["docker", "compose"]:  # `!reset` in the CPU override needs Compose v2
        cpu = config(ENV_EXAMPLE, "docker-compose.yml", "docker/cpu.yml")
        assert cpu.returncode == 0, cpu.stderr
