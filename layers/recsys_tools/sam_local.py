"""`make sam-local`: the image built by `sam build`, and every function of template.yaml run by `sam local invoke` on
its infra/events/ event against a local DynamoDB (the API's functions, then the batch function on one segment); each
answer checked, each function's init time printed as the runtime interface emulator reports it. Everything it starts
is stopped at the end, on failure too.

- Container engine: Docker where one answers; else podman (installed with apt-get where missing), run by this module
  as a Docker-compatible service on a socket of its own, configured by infra/sam-local/containers.conf (runc, explicit
  ulimits), its images kept in .cache/sam-local/containers so that a second run reuses them.
- Base image: public.ecr.aws/lambda/python:3.12 where it is present or can be pulled; else the stand-in of
  infra/sam-local/base/ (this machine's CPython 3.12 and a few Debian packages), passed to layers/Dockerfile as
  BASE_IMAGE through a copy of the template whose functions' Metadata carry `DockerBuildArgs` (SAM passes build
  arguments from nowhere else).
- Local DynamoDB: moto's server on the gateway address of the engine's bridge network, which SAM's containers join,
  with the template's tables. It also answers SAM CLI's STS lookup (`AWS_ENDPOINT_URL_STS`), which otherwise waits
  ~10 s per invoke where AWS cannot be reached.

Where the machine cannot run containers at all, it says so and exits 0 with SKIPPED.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import ipaddress
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

from recsys.settings import REPO_ROOT, Settings
from recsys_tools.local_stack import create_table
from recsys_tools.template import all_functions, batch_functions, environment, functions, load_template
from recsys_tools.training.params import DEFAULT_DATA

INFRA = REPO_ROOT / "infra" / "sam-local"
STANDIN = INFRA / "base"
EVENTS = REPO_ROOT / "infra" / "events"
CACHE = REPO_ROOT / ".cache" / "sam-local"
SAM = CACHE / "sam-cli" / "bin" / "sam"

REAL_BASE_IMAGE = "public.ecr.aws/lambda/python:3.12"
STANDIN_REPOSITORY = "localhost/recsys-lambda-python-standin"
ENDPOINT_VARIABLE = "DYNAMODB_ENDPOINT_URL"
TABLE_TYPE = "AWS::DynamoDB::Table"
REGION = "us-east-1"
GATEWAY_CONTAINER = "recsys-sam-local-gateway"
LIST_KEYS = frozenset({"customer_id", "items", "model_version", "updated_at", "version"})
BATCH = "batch segment"  # the batch function's "route": the state machine invokes it with a segment, no HTTP
ACCOUNTING_KEYS = frozenset({"seen", "written", "skipped", "failed", "failed_customers", "complete"})
ITEM_KEYS = frozenset({"product_id", "score", "source"})
# aws-lambda-rie --log-level debug (SAM_CLI_RIE_DEV=1): `INIT REPORT(initType: ..., durationMs: 812.34, status: ...)`
INIT_REPORT = re.compile(r"INIT REPORT\((?:[^)]*?\s)?durationMs: (?P<ms>\d+(?:\.\d+)?)")
INVOKE_TIMEOUT = 600
PULL_TIMEOUT = 600
CONTAINER_ID = re.compile(r"SAM_CONTAINER_ID: (?P<id>[0-9a-f]{12,64})")
# stdlib parts a Lambda base image has no use for (tests, GUI), and build-only files
STDLIB_LEFT_OUT = ("site-packages", "dist-packages", "test", "idlelib", "tkinter", "turtledemo", "__phello__")
STDLIB_FILES_LEFT_OUT = ("*.a", "_tkinter*", "*.opt-1.pyc", "*.opt-2.pyc")


class Skip(Exception):
    """The machine cannot run containers: the run says why and skips."""


class Failure(Exception):
    """Something this run checks is wrong: it says what and exits non-zero."""


def say(message: str) -> None:
    print(f"sam-local: {message}", flush=True)


# --- What the template asks for (pure: tests/infra/test_sam_local.py) -----------------------------------------------


@dataclass(frozen=True)
class Invocation:
    """One function of the template and the event it is invoked on."""

    logical_id: str
    operation: str
    event: Path
    route: str
    customer_id: str | None  # None: the batch function (every customer of the table)

    @property
    def returns_list(self) -> bool:
        """Routes on a customer's recommendations answer with the whole list."""
        return self.route.endswith("/recommendations")


def invocations(template: Mapping[str, Any], events_dir: Path = EVENTS) -> list[Invocation]:
    """Every function of the template, in the template's order, with its event infra/events/<operation>.json (the
    batch function's regenerates the lists of the customers the others were invoked for)."""
    found: list[Invocation] = []
    missing: list[str] = []
    batch = batch_functions(dict(template))
    for function in all_functions(dict(template)).values():
        path = events_dir / f"{function.operation}.json"
        if not path.is_file():
            missing.append(f"{function.logical_id} ({path})")
            continue
        event = json.loads(path.read_text(encoding="utf-8"))
        if function.logical_id in batch:
            found.append(Invocation(function.logical_id, function.operation, path, BATCH, None))
            continue
        found.append(
            Invocation(
                logical_id=function.logical_id,
                operation=function.operation,
                event=path,
                route=str(event["routeKey"]),
                customer_id=str(event["pathParameters"]["customer_id"]),
            )
        )
    if missing:
        raise Failure(f"no event for {', '.join(missing)}: add one (tests/infra/events.py writes them)")
    if not found:
        raise Failure("the template defines no function")
    return found


def table_variables(template: Mapping[str, Any], logical_id: str) -> dict[str, str]:
    """The function's environment variables (its own and Globals') that name a table of the template with a ``!Ref``:
    variable -> the table's logical id."""
    resources = template["Resources"]
    variables = {
        **template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}),
        **resources[logical_id]["Properties"].get("Environment", {}).get("Variables", {}),
    }
    return {
        name: value["Ref"]
        for name, value in variables.items()
        if isinstance(value, dict) and resources.get(value.get("Ref"), {}).get("Type") == TABLE_TYPE
    }


def env_vars(template: Mapping[str, Any], endpoint: str) -> dict[str, dict[str, str]]:
    """The `sam local invoke --env-vars` document: per function, the local DynamoDB endpoint and, for each variable
    that names a table, that table under its logical id (as SAM itself resolves a table's ``!Ref`` locally).

    SAM sets only the variables the template declares (for the function or in Globals) and drops the others without a
    word, so an undeclared endpoint variable is an error here rather than a 503 "store not reachable" later."""
    document: dict[str, dict[str, str]] = {}
    for logical_id in all_functions(dict(template)):
        declared = environment(dict(template), logical_id, _table_names(template))
        if ENDPOINT_VARIABLE not in declared:
            raise Failure(
                f"{logical_id}: template.yaml declares no {ENDPOINT_VARIABLE} (Globals.Function.Environment): "
                "`sam local invoke --env-vars` cannot set an undeclared variable"
            )
        document[logical_id] = {**table_variables(template, logical_id), ENDPOINT_VARIABLE: endpoint}
    return document


def _table_names(template: Mapping[str, Any]) -> dict[str, str]:
    """Every table of the template under its logical id."""
    return {name: name for name, resource in template["Resources"].items() if resource["Type"] == TABLE_TYPE}


def with_base_image(template: Mapping[str, Any], base_image: str) -> dict[str, Any]:
    """A copy of the template whose image functions build layers/Dockerfile with ``BASE_IMAGE=base_image``."""
    built = copy.deepcopy(dict(template))
    for function in all_functions(built).values():
        metadata = function.resource.setdefault("Metadata", {})
        metadata.setdefault("DockerBuildArgs", {})["BASE_IMAGE"] = base_image
    return built


def init_duration_ms(log: str) -> float | None:
    """The init duration of the emulator's last INIT REPORT in ``log`` (None when it printed none)."""
    durations = [float(match["ms"]) for match in INIT_REPORT.finditer(log)]
    return durations[-1] if durations else None


def function_response(stdout: str) -> dict[str, Any]:
    """The function's response, which `sam local invoke` prints as the last line of its standard output."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            response = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(response, dict):
            return response
    raise Failure(f"no JSON response in the output of sam local invoke: {stdout[-500:]!r}")


def answer_problems(invocation: Invocation, response: Mapping[str, Any]) -> list[str]:
    """What is wrong with a function's answer: a 2xx, a JSON body for the event's customer and, on the list routes,
    the list's shape (README, API). Empty when it is right."""
    if invocation.route == BATCH:
        return _accounting_problems(response)
    problems: list[str] = []
    status = response.get("statusCode")
    if not isinstance(status, int) or not 200 <= status < 300:
        problems.append(f"status {status}")
    try:
        body = json.loads(response.get("body") or "")
    except (TypeError, json.JSONDecodeError):
        return [*problems, f"body is not JSON: {str(response.get('body'))[:200]!r}"]
    if not isinstance(body, dict):
        return [*problems, f"body is not a JSON object: {body!r:.200}"]
    if "error" in body:
        problems.append(f"error {json.dumps(body['error'])[:300]}")
    if body.get("customer_id") != invocation.customer_id:
        problems.append(f"customer_id {body.get('customer_id')!r}, expected {invocation.customer_id!r}")
    if invocation.returns_list and "error" not in body:
        if missing := sorted(LIST_KEYS - body.keys()):
            problems.append(f"no {', '.join(missing)} in the body")
        items = body.get("items")
        if not isinstance(items, list) or not items:
            problems.append(f"items is not a non-empty list: {items!r:.200}")
        else:
            for item in items:
                if not isinstance(item, dict) or not item.keys() >= ITEM_KEYS:
                    problems.append(f"an item lacks {', '.join(sorted(ITEM_KEYS))}: {item!r:.200}")
                    break
                if not isinstance(item["score"], int | float) or isinstance(item["score"], bool):
                    problems.append(f"an item's score is not a number: {item!r:.200}")
                    break
    return problems


def _accounting_problems(response: Mapping[str, Any]) -> list[str]:
    """The batch function's answer: its segment's accounting, every customer seen written or skipped, none failed."""
    if missing := sorted(ACCOUNTING_KEYS - response.keys()):
        return [f"not an accounting: no {', '.join(missing)} in {json.dumps(response)[:300]}"]
    problems = [] if response["seen"] >= 1 else ["no customer seen"]
    if response["failed"]:
        problems.append(f"failed customers {response['failed_customers']}")
    if response["complete"] is not True:
        problems.append("segment not complete")
    return problems


def summary(invocation: Invocation, response: Mapping[str, Any]) -> str:
    """A few words on a (right) answer: its status and how many items it holds (the batch: its accounting)."""
    if invocation.route == BATCH:
        return f"seen {response['seen']}, written {response['written']}, skipped {response['skipped']}"
    body = json.loads(response.get("body") or "{}")
    items = body.get("items") if isinstance(body, dict) else None
    return f"{response.get('statusCode')}" + (f", {len(items)} items" if isinstance(items, list) else "")


# --- Commands --------------------------------------------------------------------------------------------------------


def run(command: Sequence[str | Path], *, env: Mapping[str, str] | None = None, quiet: bool = False) -> str:
    """Run ``command``; its output streams to the console unless ``quiet`` (then it is returned). Raises Failure."""
    argv = [str(part) for part in command]
    if quiet:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0:
            raise Failure(f"`{' '.join(argv)}` exited {done.returncode}: {(done.stderr or done.stdout)[-2000:]}")
        return done.stdout
    code = subprocess.run(argv, env=env, check=False).returncode  # noqa: S603
    if code != 0:
        raise Failure(f"`{' '.join(argv)}` exited {code}")
    return ""


def succeeds(command: Sequence[str | Path], env: Mapping[str, str] | None = None, timeout: float = 120) -> bool:
    try:
        done = subprocess.run(  # noqa: S603
            [str(part) for part in command], env=env, capture_output=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


# --- The container engine --------------------------------------------------------------------------------------------


@dataclass
class Engine:
    """A Docker-compatible engine: the CLI this module drives it with and the socket SAM CLI talks to."""

    name: str
    cli: list[str]
    docker_host: str
    env: dict[str, str]

    def __call__(self, *args: str | Path, quiet: bool = True) -> str:
        return run([*self.cli, *args], env=self.env, quiet=quiet)

    def has_image(self, image: str) -> bool:
        return succeeds([*self.cli, "image", "inspect", image], self.env)

    def image_size(self, image: str) -> int:
        return int(self("image", "inspect", "--format", "{{.Size}}", image).strip())


def _docker_engine() -> Engine | None:
    """Docker, where its CLI answers on DOCKER_HOST or the default socket."""
    docker = shutil.which("docker")
    if docker is None:
        return None
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://") and not Path(host.removeprefix("unix://")).exists():
        return None
    env = {**os.environ, "DOCKER_HOST": host}
    if not succeeds([docker, "info"], env, timeout=30):
        return None
    return Engine("docker", [docker], host, env)


def _install_podman() -> None:
    if shutil.which("podman") and shutil.which("runc"):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Skip("no Docker engine answers, and podman is not installed (installing it needs root and apt-get)")
    say("installing podman and runc (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        run(["apt-get", "update", "-q"], env=env, quiet=True)
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "podman", "runc"], env=env, quiet=True)
    except Failure as error:
        raise Skip(f"no Docker engine answers, and podman cannot be installed: {error}") from error


def _probe_rootfs() -> Path:
    """A root file system of /bin/true and the libraries it loads: enough to see whether a container can start."""
    probe = CACHE / "probe-rootfs"
    if (probe / "bin" / "true").exists():
        return probe
    true = Path(shutil.which("true") or "/bin/true").resolve()
    libraries = re.findall(r"(/\S+\.so[.\d]*)", run(["ldd", true], quiet=True))
    for path in [true, *map(Path, libraries)]:
        target = probe / ("bin/true" if path == true else str(path).lstrip("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path.resolve(), target)
    return probe


@contextmanager
def podman_service() -> Iterator[Engine]:
    """podman as a Docker-compatible service, its storage in .cache/sam-local/containers; stopped on exit."""
    if os.geteuid() != 0:
        raise Skip("no Docker engine answers, and this module runs podman as root only (rootless podman needs setup)")
    _install_podman()
    state = Path("/run") / f"recsys-sam-local-{hashlib.sha256(str(REPO_ROOT).encode()).hexdigest()[:12]}"
    socket_path = state / "podman.sock"
    cli = [
        shutil.which("podman") or "podman",
        "--root",
        str(CACHE / "containers" / "storage"),
        "--runroot",
        str(state / "runroot"),
        "--tmpdir",
        str(state / "tmp"),
    ]
    env = {**os.environ, "CONTAINERS_CONF": str(INFRA / "containers.conf")}
    engine = Engine("podman", cli, f"unix://{socket_path}", env)
    shutil.rmtree(state, ignore_errors=True)  # a previous run that was killed: podman refreshes its state
    state.mkdir(parents=True)
    probe = subprocess.run(  # noqa: S603
        [*cli, "run", "--rm", "--network", "none", "--rootfs", str(_probe_rootfs()), "/bin/true"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if probe.returncode != 0:
        raise Skip(f"podman cannot start a container on this machine: {probe.stderr.strip()[-1000:]}")
    log = (CACHE / "podman-service.log").open("w")
    service = subprocess.Popen(  # noqa: S603
        [*cli, "system", "service", "--time=0", engine.docker_host],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    say(f"podman service started (pid {service.pid}) on {engine.docker_host}")
    try:
        deadline = time.monotonic() + 60
        while not _answers(socket_path):
            if service.poll() is not None or time.monotonic() > deadline:
                raise Failure(f"the podman service did not come up; see {CACHE / 'podman-service.log'}")
            time.sleep(0.2)
        yield engine
    finally:
        # a container left by an interrupted invoke (the storage is this module's own: nothing else is in it)
        subprocess.run([*cli, "rm", "--all", "--force", "--time", "0"], env=env, capture_output=True, check=False)  # noqa: S603
        service.terminate()
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        log.close()
        say(f"podman service stopped (pid {service.pid})")
        shutil.rmtree(state, ignore_errors=True)


def _answers(socket_path: Path) -> bool:
    """Whether the Docker-compatible API answers /_ping on the socket."""
    if not socket_path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(5)
        try:
            client.connect(str(socket_path))
            client.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            return client.recv(64).startswith(b"HTTP/1.")
        except OSError:
            return False


@contextmanager
def container_engine() -> Iterator[Engine]:
    docker = _docker_engine()
    if docker is not None:
        say(f"using Docker on {docker.docker_host}")
        yield docker
        return
    say("no Docker engine answers: using podman")
    with podman_service() as podman:
        yield podman


# --- The base image --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Python312:
    """A CPython 3.12 installation of this machine, as the stand-in copies it."""

    version: str
    executable: Path
    stdlib: Path
    libpython: Path | None


_PYTHON_FACTS = """
import json, os, sys, sysconfig
shared = sysconfig.get_config_var("Py_ENABLE_SHARED")
lib = os.path.join(sysconfig.get_config_var("LIBDIR") or "", sysconfig.get_config_var("INSTSONAME") or "")
print(json.dumps({"version": "%d.%d.%d" % sys.version_info[:3], "executable": os.path.realpath(sys.executable),
                  "stdlib": sysconfig.get_path("stdlib"), "libpython": lib if shared else None}))
"""


def find_python312() -> Python312 | None:
    """$SAM_LOCAL_PYTHON, python3.12 on PATH, pyenv's 3.12 versions, the usual system paths: the first that runs."""
    candidates = [os.environ.get("SAM_LOCAL_PYTHON", ""), shutil.which("python3.12") or ""]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += [str(p) for p in sorted(pyenv_root.glob("versions/3.12*/bin/python3.12"), reverse=True)]
    candidates += ["/usr/local/bin/python3.12", "/usr/bin/python3.12"]
    for candidate in filter(None, candidates):
        try:
            done = subprocess.run(  # noqa: S603
                [candidate, "-I", "-c", _PYTHON_FACTS], capture_output=True, text=True, timeout=60, check=False
            )
        except OSError:
            continue
        if done.returncode != 0:
            continue
        facts = json.loads(done.stdout)
        if not facts["version"].startswith("3.12."):
            continue
        libpython = Path(facts["libpython"]) if facts["libpython"] else None
        return Python312(facts["version"], Path(facts["executable"]), Path(facts["stdlib"]), libpython)
    return None


def standin_tag(python: Python312, sam_cli_pins: bytes) -> str:
    """The stand-in's tag: a digest of everything it is built from, so an unchanged stand-in is built once."""
    digest = hashlib.sha256()
    for path in sorted(STANDIN.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    digest.update(f"{python.version} {python.executable}".encode())
    digest.update(sam_cli_pins)  # the aws-lambda-rie binary comes with SAM CLI
    ca_bundle = _ca_bundle()
    if ca_bundle is not None:
        digest.update(ca_bundle.read_bytes())
    return f"{STANDIN_REPOSITORY}:3.12-{digest.hexdigest()[:12]}"


def _ca_bundle() -> Path | None:
    for path in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"):
        if Path(path).is_file():
            return Path(path)
    return None


def _debian_packages() -> list[Path]:
    """The .deb files of infra/sam-local/base/packages.txt, downloaded once into .cache/sam-local/debs."""
    names = [
        line.strip()
        for line in (STANDIN / "packages.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    debs = CACHE / "debs"
    debs.mkdir(parents=True, exist_ok=True)

    def downloaded() -> dict[str, Path]:
        found = {name: sorted(debs.glob(f"{name}_*.deb")) for name in names}
        return {name: paths[-1] for name, paths in found.items() if paths}

    missing = [name for name in names if name not in downloaded()]
    if missing:
        if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
            raise Skip("the stand-in base image is built from Debian packages: apt-get and dpkg-deb are needed")
        say(f"downloading {len(missing)} Debian packages for the stand-in base image")
        done = subprocess.run(["apt-get", "download", *missing], cwd=debs, capture_output=True, check=False)  # noqa: S603, S607
        if done.returncode != 0:  # no package lists yet on a fresh machine
            run(["apt-get", "update", "-q"], quiet=True)
            subprocess.run(["apt-get", "download", *missing], cwd=debs, check=True)  # noqa: S603, S607
    found = downloaded()
    if missing := [name for name in names if name not in found]:
        raise Failure(f"apt-get download did not bring {', '.join(missing)}")
    return [found[name] for name in names]


def assemble_standin(python: Python312, context: Path) -> None:
    """The stand-in's build context: its Dockerfile and requirements beside rootfs/ (Debian packages, /var/lang, the
    CA bundle, the entrypoint and aws-lambda-rie)."""
    shutil.rmtree(context, ignore_errors=True)
    rootfs = context / "rootfs"
    rootfs.mkdir(parents=True)
    for name in ("Dockerfile", "requirements.txt"):
        shutil.copy2(STANDIN / name, context / name)
    for deb in _debian_packages():
        run(["dpkg-deb", "-x", deb, rootfs], quiet=True)
    if not (rootfs / "bin" / "sh").exists():
        (rootfs / "bin" / "sh").symlink_to("dash")
    lang = rootfs / "var" / "lang"
    (lang / "bin").mkdir(parents=True)
    (lang / "lib").mkdir()
    shutil.copy2(python.executable, lang / "bin" / "python3.12")
    for alias in ("python3", "python"):
        (lang / "bin" / alias).symlink_to("python3.12")
    if python.libpython is not None:
        shutil.copy2(python.libpython, lang / "lib" / python.libpython.name)
        (lang / "lib" / "libpython3.12.so").symlink_to(python.libpython.name)
    stdlib = lang / "lib" / "python3.12"

    def left_out(directory: str, names: list[str]) -> set[str]:
        out = set(shutil.ignore_patterns(*STDLIB_FILES_LEFT_OUT)(directory, names))
        return out | ({n for n in names if n in STDLIB_LEFT_OUT} if Path(directory) == python.stdlib else set())

    shutil.copytree(python.stdlib, stdlib, symlinks=True, ignore=left_out)
    (stdlib / "site-packages").mkdir()
    etc = rootfs / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n")
    (etc / "group").write_text("root:x:0:\nnobody:x:65534:\n")
    ca_bundle = _ca_bundle()
    if ca_bundle is not None:  # the machine's trust store: pip in the image reaches the index as the machine does
        (etc / "pki" / "tls" / "certs").mkdir(parents=True)
        shutil.copyfile(ca_bundle, etc / "pki" / "tls" / "certs" / "ca-bundle.crt")
        (etc / "ssl" / "certs").mkdir(parents=True, exist_ok=True)
        (etc / "ssl" / "certs" / "ca-certificates.crt").symlink_to("/etc/pki/tls/certs/ca-bundle.crt")
        (etc / "pip.conf").write_text("[global]\ncert = /etc/pki/tls/certs/ca-bundle.crt\n")
    for directory in ("tmp", "root", "var/task", "var/runtime", "opt"):
        (rootfs / directory).mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    shutil.copy2(STANDIN / "lambda-entrypoint.sh", rootfs / "lambda-entrypoint.sh")
    (rootfs / "lambda-entrypoint.sh").chmod(0o755)
    (rootfs / "usr" / "local" / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(_rie(), rootfs / "usr" / "local" / "bin" / "aws-lambda-rie")
    (rootfs / "usr" / "local" / "bin" / "aws-lambda-rie").chmod(0o755)


def _rie() -> Path:
    """The runtime interface emulator SAM CLI ships."""
    found = sorted(CACHE.glob("sam-cli/lib/python3*/site-packages/samcli/local/rapid/aws-lambda-rie-x86_64"))
    if not found:
        raise Failure(f"no aws-lambda-rie in SAM CLI's package under {CACHE / 'sam-cli'} (run `make sam-local`)")
    return found[-1]


def base_image(engine: Engine, choice: str) -> str:
    """The real Lambda base image where it is present or can be pulled (``choice`` "auto" or "real"), else the
    stand-in, built once."""
    if choice in ("auto", "real"):
        if engine.has_image(REAL_BASE_IMAGE):
            say(f"base image: {REAL_BASE_IMAGE} (present)")
            return REAL_BASE_IMAGE
        try:
            pulled = subprocess.run(  # noqa: S603
                [*engine.cli, "pull", REAL_BASE_IMAGE],
                env=engine.env,
                capture_output=True,
                text=True,
                timeout=PULL_TIMEOUT,
                check=False,
            )
            if pulled.returncode == 0:
                say(f"base image: {REAL_BASE_IMAGE} (pulled)")
                return REAL_BASE_IMAGE
            reason = (pulled.stderr.strip().splitlines() or ["?"])[-1]
        except subprocess.TimeoutExpired:
            reason = f"no answer within {PULL_TIMEOUT} s"
        if choice == "real":
            raise Failure(f"{REAL_BASE_IMAGE} cannot be pulled: {reason}")
        say(f"{REAL_BASE_IMAGE} cannot be pulled ({reason[:300]}): using the stand-in")
    python = find_python312()
    if python is None:
        raise Skip(f"{REAL_BASE_IMAGE} cannot be pulled and this machine has no CPython 3.12 to build the stand-in")
    tag = standin_tag(python, (INFRA / "sam-cli.txt").read_bytes())
    if engine.has_image(tag):
        say(f"base image: {tag} (the stand-in, built before)")
        return tag
    say(f"building the stand-in base image {tag} from CPython {python.version} ({python.executable})")
    context = CACHE / "standin-context"
    assemble_standin(python, context)
    engine("build", "--tag", tag, "--file", context / "Dockerfile", context, quiet=False)
    shutil.rmtree(context, ignore_errors=True)
    say(f"base image: {tag} (the stand-in, {engine.image_size(tag) / 1e6:.0f} MB)")
    return tag


# --- SAM CLI ---------------------------------------------------------------------------------------------------------


def sam_env(engine: Engine, sts_endpoint: str | None = None) -> dict[str, str]:
    """SAM CLI's environment: the engine's socket, no telemetry, the emulator's INIT REPORT, local credentials only
    (no profile or credentials file of this machine), and its own home under .cache/sam-local."""
    home = CACHE / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "DOCKER_", "SAM_", "VIRTUAL_ENV", "UV_"))
    }
    env |= {
        "HOME": str(home),
        "DOCKER_HOST": engine.docker_host,
        "SAM_CLI_TELEMETRY": "0",
        "SAM_CLI_RIE_DEV": "1",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(home / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
    }
    if sts_endpoint:
        env["AWS_ENDPOINT_URL_STS"] = sts_endpoint
    return env


def sam_build(engine: Engine, template: Mapping[str, Any], base: str) -> Path:
    """`sam build` of a copy of the template that passes BASE_IMAGE; returns the built template."""
    build = CACHE / "build"
    source = CACHE / "template.json"
    source.write_text(json.dumps(with_base_image(template, base), indent=1), encoding="utf-8")
    run(
        [SAM, "build", "--template-file", source, "--build-dir", build, "--base-dir", REPO_ROOT],
        env=sam_env(engine),
    )
    return build / "template.yaml"


@dataclass
class Outcome:
    invocation: Invocation
    seconds: float
    init_ms: float | None
    problems: list[str]
    answer: str
    log: Path


def sam_invoke(engine: Engine, built: Path, invocation: Invocation, env_file: Path, sts: str, round_: int) -> Outcome:
    """`sam local invoke` of one function on its event; its output kept in .cache/sam-local/logs.

    The emulator's log is read from the engine as well (`logs --follow` on the container SAM announces): SAM CLI
    relays it through the engine's attach API, and under podman 4.3 that stream breaks now and then (docker-py:
    "ValueError: 87 is not a valid stream", which SAM logs at debug level only), losing the INIT REPORT."""
    logs = CACHE / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{invocation.operation}-{round_}.log"
    command = [
        str(SAM),
        "local",
        "invoke",
        invocation.logical_id,
        "--template-file",
        str(built),
        "--event",
        str(invocation.event),
        "--env-vars",
        str(env_file),
        "--skip-pull-image",
        "--region",
        REGION,
    ]
    started = time.monotonic()
    with (
        (logs / "sam.stdout").open("w+") as stdout_file,
        (logs / "container.log").open("w+") as container_file,
    ):
        sam = subprocess.Popen(  # noqa: S603
            command, env=sam_env(engine, sts), stdout=stdout_file, stderr=subprocess.PIPE, text=True
        )
        killer = threading.Timer(INVOKE_TIMEOUT, sam.kill)
        killer.start()
        stderr_lines: list[str] = []
        follower: threading.Thread | None = None
        followers: list[subprocess.Popen[bytes]] = []
        try:
            assert sam.stderr is not None  # stderr=PIPE
            for line in sam.stderr:
                stderr_lines.append(line)
                announced = CONTAINER_ID.search(line)
                if announced and follower is None:
                    follower = threading.Thread(
                        target=_follow_logs, args=(engine, announced["id"], container_file, followers)
                    )
                    follower.start()
            code = sam.wait()
            timed_out = not killer.is_alive()
            if follower is not None:
                follower.join(timeout=15)  # `logs --follow` ends when SAM has removed the container
        finally:
            killer.cancel()
            sam.kill()
            sam.wait()
            for process in followers:
                process.kill()
            if follower is not None:
                follower.join()
        stdout_file.seek(0)
        stdout = stdout_file.read()
        container_file.seek(0)
        container_log = container_file.read()
    seconds = time.monotonic() - started
    stderr = "".join(stderr_lines)
    log.write_text(
        f"$ {' '.join(command)}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- container log\n{container_log}\n",
        encoding="utf-8",
    )
    problems: list[str] = []
    answer = ""
    if timed_out:
        problems.append(f"sam local invoke did not end within {INVOKE_TIMEOUT} s")
    elif code != 0:
        problems.append(f"sam local invoke exited {code}")
    try:
        response = function_response(stdout)
        problems += answer_problems(invocation, response)
        answer = summary(invocation, response)
    except Failure as error:
        problems.append(str(error))
    init_ms = init_duration_ms(stderr)
    if init_ms is None:
        init_ms = init_duration_ms(container_log)
    return Outcome(invocation, seconds, init_ms, problems, answer, log)


def _follow_logs(engine: Engine, container: str, output: IO[str], followers: list[subprocess.Popen[bytes]]) -> None:
    """Copy the container's log to ``output`` until the container is gone (the process is put in ``followers``, for
    the caller to end). SAM announces the container when created, and `logs --follow` returns at once on a container
    that has not started: wait for it to start first."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = subprocess.run(  # noqa: S603
            [*engine.cli, "inspect", "--format", "{{.State.Status}}", container],
            env=engine.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if state.returncode != 0 or state.stdout.strip() != "created":
            break
        time.sleep(0.05)
    process = subprocess.Popen(  # noqa: S603
        [*engine.cli, "logs", "--follow", container], env=engine.env, stdout=output, stderr=subprocess.STDOUT
    )
    followers.append(process)
    process.wait()


# --- The local DynamoDB ----------------------------------------------------------------------------------------------


@contextmanager
def bridge_gateway(engine: Engine, image: str) -> Iterator[str]:
    """The gateway address of the bridge network SAM's containers join, held up by a sleeping container of
    ``image`` (a podman bridge exists only while a container is on it); the container is removed on exit."""
    # `sleep` as PID 1 ignores SIGTERM: podman would wait 10 s before killing it
    remove = [*engine.cli, "rm", "--force", *(["--time", "0"] if engine.name == "podman" else []), GATEWAY_CONTAINER]
    subprocess.run(remove, env=engine.env, capture_output=True, check=False)  # noqa: S603 - left by a killed run
    engine("run", "--detach", "--rm", "--name", GATEWAY_CONTAINER, "--entrypoint", "sleep", image, "3600")
    try:
        networks = json.loads(engine("inspect", "--format", "{{json .NetworkSettings.Networks}}", GATEWAY_CONTAINER))
        gateways = [str(n.get("Gateway")) for n in (networks or {}).values() if n.get("Gateway")]
        if not gateways:
            raise Failure(f"the container {GATEWAY_CONTAINER} has no network gateway: {networks}")
        gateway = gateways[0]
        if not ipaddress.ip_address(gateway).is_private:
            raise Failure(f"the bridge gateway {gateway} is not a private address")
        yield gateway
    finally:
        subprocess.run(remove, env=engine.env, capture_output=True, check=False)  # noqa: S603


@contextmanager
def local_dynamodb(host: str, template: Mapping[str, Any], customers: Collection[str]) -> Iterator[str]:
    """moto's server on ``host`` (an ephemeral port) with the template's tables, created by the local stack from the
    settings the functions get, and the purchase histories of ``customers`` from the shipped data (as
    `recsys import-history` seeds them: generate and update read them); its endpoint URL. Stopped on exit."""
    from moto.server import ThreadedMotoServer

    from recsys_tools.import_history import import_histories
    from recsys_tools.training.data import load_purchases

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    with socket.socket() as probe:  # ThreadedMotoServer.start() waits forever when it cannot bind
        probe.bind((host, 0))
    server = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
    server.start()
    host_, port = server.get_host_and_port()
    endpoint = f"http://{host_}:{port}"
    say(f"local DynamoDB (moto) listening on {endpoint}")
    try:
        variables: dict[str, str] = {}
        for function_variables in env_vars(template, endpoint).values():
            variables |= function_variables
        os.environ.update({"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_REGION": REGION})
        os.environ.update(variables)
        create_table(Settings(), dict(template))
        purchases = load_purchases(DEFAULT_DATA)
        import_histories(Settings(), purchases[purchases["customer_id"].isin(list(customers))])
        say(f"seeded the purchase histories of customers {', '.join(sorted(customers))} from {DEFAULT_DATA.name}")
        yield endpoint
    finally:
        server.stop()
        say("local DynamoDB stopped")


# --- The run ---------------------------------------------------------------------------------------------------------


def _stop_on_signals() -> None:
    """SIGTERM and SIGHUP end the run through its cleanups, as Ctrl-C does."""

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys_tools.sam_local", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--base-image",
        choices=("auto", "real", "standin"),
        default="auto",
        help=f"auto: {REAL_BASE_IMAGE} where it can be had, else the stand-in",
    )
    parser.add_argument("--rounds", type=int, default=1, help="invoke every function this many times (cold each time)")
    args = parser.parse_args(argv)
    _stop_on_signals()
    started = time.monotonic()
    try:
        outcomes, image, size = _run(args.base_image, args.rounds, started)
    except Skip as skip:
        say(f"SKIPPED: {skip}")
        return 0
    except Failure as failure:
        say(f"FAILED: {failure}")
        return 1
    failed = [o for o in outcomes if o.problems]
    say(f"image {image}: {size / 1e9:.2f} GB; {time.monotonic() - started:.0f} s in all")
    for outcome in failed:
        say(f"FAILED: {outcome.invocation.logical_id}: {'; '.join(outcome.problems)} (log: {outcome.log})")
        print(outcome.log.read_text(encoding="utf-8")[-4000:], flush=True)
    say(f"{len(outcomes) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def _run(base_choice: str, rounds: int, started: float) -> tuple[list[Outcome], str, int]:
    if not SAM.exists():
        raise Failure(f"SAM CLI is not installed at {SAM.relative_to(REPO_ROOT)}: run `make sam-local`")
    template = load_template()
    planned = invocations(template)
    env_vars(template, "http://check")  # the template declares what --env-vars sets, before anything is built
    CACHE.mkdir(parents=True, exist_ok=True)

    def elapsed() -> str:
        return f"[{time.monotonic() - started:.0f} s]"

    with ExitStack() as stack:
        engine = stack.enter_context(container_engine())
        base = base_image(engine, base_choice)
        say(f"{elapsed()} sam build ({len(planned)} functions, one image)")
        built = sam_build(engine, template, base)
        built_template = load_template(built)
        image = str(functions(built_template)[planned[0].logical_id].properties["ImageUri"])
        size = engine.image_size(image)
        say(f"{elapsed()} built {image}: {size / 1e9:.2f} GB")
        gateway = stack.enter_context(bridge_gateway(engine, image))
        endpoint = stack.enter_context(
            local_dynamodb(gateway, template, {i.customer_id for i in planned if i.customer_id})
        )
        env_file = CACHE / "env.json"
        env_file.write_text(json.dumps(env_vars(template, endpoint), indent=2), encoding="utf-8")
        outcomes: list[Outcome] = []
        for round_ in range(1, rounds + 1):
            for invocation in planned:
                say(f"{elapsed()} sam local invoke {invocation.logical_id} ({invocation.route})")
                outcome = sam_invoke(engine, built, invocation, env_file, endpoint, round_)
                outcomes.append(outcome)
                init = "no INIT REPORT" if outcome.init_ms is None else f"init {outcome.init_ms:,.0f} ms"
                verdict = "ok" if not outcome.problems else "FAILED: " + "; ".join(outcome.problems)
                say(f"  {outcome.answer or '-'}; {init}; {outcome.seconds:.1f} s; {verdict}")
        _report(outcomes, image, size, base)
        return outcomes, image, size


def _report(outcomes: list[Outcome], image: str, size: int, base: str) -> None:
    """The init durations, one line per function, and .cache/sam-local/results.json."""
    say("init duration as the emulator reports it (INIT REPORT), per function:")
    by_function: dict[str, list[float]] = {}
    for outcome in outcomes:
        if outcome.init_ms is not None:
            by_function.setdefault(outcome.invocation.logical_id, []).append(outcome.init_ms)
    for logical_id, durations in by_function.items():
        say(f"  {logical_id:34} {', '.join(f'{d:,.0f}' for d in durations)} ms")
    results = {
        "image": image,
        "image_bytes": size,
        "base_image": base,
        "invocations": [
            {
                "function": o.invocation.logical_id,
                "init_ms": o.init_ms,
                "seconds": round(o.seconds, 2),
                "answer": o.answer,
                "problems": o.problems,
            }
            for o in outcomes
        ],
    }
    (CACHE / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
