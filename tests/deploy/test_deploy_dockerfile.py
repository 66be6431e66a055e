"""The Dockerfile: linted, checked for its shape, and its install steps run for real.

No Docker engine runs here. Instead the builder stage's COPY and RUN instructions are
carried out as written in a temporary directory (WORKDIR and ${VENV} pointed there), with a
Python 3.12 like the image's when one is installed, and the resulting virtualenv is started
the way the image's ENTRYPOINT and HEALTHCHECK start it.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from deploy_helpers import REPO, run, tool

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
BASE_IMAGE = "python:3.12-slim"
# An absolute path in a builder RUN line would escape the test's substitution.
ABSOLUTE_PATH = re.compile(r"(?<![\w}.$])/[\w.-]+")
ALLOWED_ABSOLUTE = {"/dev"}
API_KEY = "k" * 40


# --- a small Dockerfile reader ---------------------------------------------------------------


@dataclass
class Stage:
    """One FROM ... section."""

    image: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [a for i, a in self.instructions if i == instruction]


def _logical_lines(text: str) -> Iterator[str]:
    """Instructions with continuations joined and comment lines dropped."""
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        yield current + line
        current = ""
    if current:
        yield current


def _substitute(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)",
                  lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), value)


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, FROM images resolved."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(text):
        instruction, _, rest = line.partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "FROM":
            image, _, name = rest.partition(" AS ") if " AS " in rest else rest.partition(" as ")
            stages.append(Stage(_substitute(image.strip(), global_args), name.strip()))
        elif not stages and instruction == "ARG":
            key, _, default = rest.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append((instruction, rest))
    return global_args, stages


def _env_assignments(rest: str) -> dict[str, str]:
    """ENV/ARG key=value pairs (quotes removed)."""
    return {k: v.strip('"') for k, v in re.findall(r'(\w+)=("[^"]*"|\S+)', rest)}


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    _, parsed = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
    return {s.name: s for s in parsed}


# --- .dockerignore -------------------------------------------------------------------------------


def _ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    patterns = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        glob_ = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(glob_):
            if glob_.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif glob_.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif glob_[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif glob_[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif glob_[i] == "[":
                end = glob_.index("]", i)
                regex, i = regex + glob_[i:end + 1], end + 1
            else:
                regex, i = regex + re.escape(glob_[i]), i + 1
        patterns.append((negated, re.compile(regex)))
    return patterns


def dockerignored(relative: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = relative.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for negated, pattern in patterns:
        if any(pattern.fullmatch(c) for c in candidates):
            ignored = not negated
    return ignored


def test_dockerignore_reader_follows_docker_semantics() -> None:
    patterns = _ignore_patterns()
    assert not dockerignored("monitor/cli.py", patterns)
    assert dockerignored("monitor/__pycache__/cli.cpython-312.pyc", patterns)
    assert dockerignored(".venv/bin/python", patterns)
    assert dockerignored(".git/config", patterns)
    assert dockerignored("tests/deploy/conftest.py", patterns)


# --- static checks ---------------------------------------------------------------------------------


def test_hadolint_passes() -> None:
    result = run([tool("hadolint"), "--no-color", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_on_slim_python(stages: dict[str, Stage]) -> None:
    assert list(stages) == ["builder", "runtime"]
    for stage in stages.values():
        assert stage.image == BASE_IMAGE


def test_runtime_stage_is_the_venv_alone(stages: dict[str, Stage]) -> None:
    runtime = stages["runtime"]
    # Nothing is installed or run in the final stage: no compilers, no package manager use.
    assert not runtime.args("RUN")
    assert not re.search(r"gcc|build-essential|apt-get|pip ", " ".join(a for _, a in
                                                                       runtime.instructions))
    (copy,) = runtime.args("COPY")
    assert copy == "--from=builder ${VENV} ${VENV}"
    builder_venv = _env_assignments(" ".join(stages["builder"].args("ARG")))["VENV"]
    assert _env_assignments(" ".join(runtime.args("ARG")))["VENV"] == builder_venv


def test_runtime_runs_as_numeric_non_root_user(stages: dict[str, Stage]) -> None:
    (user,) = stages["runtime"].args("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) >= 10000
    assert not gid or (gid.isdigit() and int(gid) > 0)


def test_entrypoint_port_and_healthcheck(stages: dict[str, Stage]) -> None:
    runtime = stages["runtime"]
    assert [json.loads(a) for a in runtime.args("ENTRYPOINT")] == [["gateway-monitor"]]
    assert runtime.args("EXPOSE") == ["9478"]
    command = _healthcheck_command(runtime)
    assert command[0] == "python"
    assert "http://127.0.0.1:" in command[-1] and "/-/healthy" in command[-1]


def _healthcheck_command(runtime: Stage) -> list[str]:
    (healthcheck,) = runtime.args("HEALTHCHECK")
    _, _, command = healthcheck.partition(" CMD ")
    parsed: list[str] = json.loads(command)
    return parsed


def test_builder_run_lines_use_only_substitutable_paths(stages: dict[str, Stage]) -> None:
    for line in stages["builder"].args("RUN"):
        paths = {p for p in ABSOLUTE_PATH.findall(line) if p not in ALLOWED_ABSOLUTE}
        assert not paths, f"absolute paths {paths} in RUN {line!r}: use WORKDIR or ${{VENV}}"


def test_copy_sources_exist_and_are_not_dockerignored(stages: dict[str, Stage]) -> None:
    patterns = _ignore_patterns()
    for copy in stages["builder"].args("COPY"):
        *sources, _dest = copy.split()
        for source in sources:
            assert (REPO / source).exists(), (
                f"COPY {source}: missing from the repository, `docker build` would fail"
                + (" (pyproject.toml names it as the package readme)"
                   if source == "README.md" else ""))
            assert not dockerignored(source.strip("/"), patterns), f"{source} is dockerignored"


# --- the install steps, for real ------------------------------------------------------------------


def _python312() -> str:
    """The image's Python (3.12) if installed here, else the test's own Python.

    Resolved to the real interpreter: a pyenv shim linked under another name would start
    pyenv's global version instead.
    """
    candidates = [*sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12"))),
                  shutil.which("python3.12")]
    probe = "import sys; print(sys.version_info[:2] == (3, 12)); print(sys.executable)"
    for candidate in filter(None, candidates):
        result = run([candidate, "-c", probe], timeout=30)
        lines = result.stdout.split()
        if result.returncode == 0 and lines and lines[0] == "True":
            return lines[1]
    return sys.executable


def _copy_into(source: Path, dest: Path, patterns: list[tuple[bool, re.Pattern[str]]]) -> None:
    """Docker's COPY of a file or a directory's contents, honouring .dockerignore."""
    if source.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)
        return
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(REPO).as_posix()
        if path.is_file() and not dockerignored(relative, patterns):
            target = dest / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


@dataclass
class Installed:
    """The virtualenv the builder stage produced, and the interpreter that built it."""

    venv: Path
    python: str
    log: str


@pytest.fixture(scope="module")
def installed(stages: dict[str, Stage], tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Carry out the builder stage: COPY into a temp WORKDIR, then every RUN line verbatim."""
    root = tmp_path_factory.mktemp("image")
    workdir, venv, shims = root / "build", root / "venv", root / "shims"
    shims.mkdir()
    python = _python312()
    (shims / "python").symlink_to(python)
    env = {"PATH": f"{shims}{os.pathsep}{os.environ['PATH']}", "HOME": str(root),
           "LANG": "C.UTF-8", "VENV": str(venv)}
    patterns = _ignore_patterns()
    log = [f"python: {python}"]
    for instruction, rest in stages["builder"].instructions:
        if instruction in ("ARG", "ENV"):
            values = _env_assignments(rest)
            values.pop("VENV", None)  # the one path the test substitutes
            env.update({k: _substitute(v, env) for k, v in values.items()})
        elif instruction == "WORKDIR":
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction == "COPY":
            *sources, dest = rest.split()
            for source in sources:
                src = REPO / source
                if not src.exists():
                    pytest.fail(f"COPY {source}: not in the repository")
                target = workdir / dest
                if src.is_file() and (dest.endswith("/") or len(sources) > 1):
                    target = target / src.name
                _copy_into(src, target, patterns)
        elif instruction == "RUN":
            result = run(["/bin/sh", "-c", rest], timeout=400, cwd=workdir, env=env)
            log.append(f"RUN {rest}\n{result.stdout}{result.stderr}")
            if result.returncode != 0:
                pytest.fail("builder RUN failed:\n" + "\n".join(log))
        else:
            pytest.fail(f"the test does not know how to carry out {instruction} in the builder")
    assert (venv / "bin" / "gateway-monitor").is_file()
    return Installed(venv, python, "\n".join(log))


@pytest.mark.timeout(600)
def test_venv_runs_on_the_interpreter_that_built_it(installed: Installed) -> None:
    probe = "import sys; print(sys.version_info[:2])"
    want = run([installed.python, "-c", probe]).stdout
    got = run([str(installed.venv / "bin" / "python"), "-c", probe]).stdout
    assert got == want, installed.log
    if "(3, 12)" not in got:
        # Not a failure (the package supports 3.11), but the image runs 3.12: say so.
        print(f"note: no Python 3.12 here, the install steps ran on {got.strip()}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _monitor_env(installed: Installed, tmp_path: Path, **extra: str) -> dict[str, str]:
    key = tmp_path / "api-key"
    key.write_text(API_KEY, encoding="utf-8")
    return {"PATH": f"{installed.venv / 'bin'}{os.pathsep}/usr/bin:/bin", "HOME": str(tmp_path),
            "LANG": "C.UTF-8", "GATEWAY_API_KEY_FILE": str(key), **extra}


@pytest.mark.timeout(600)
def test_installed_entrypoint_checks_a_valid_config(installed: Installed, tmp_path: Path) -> None:
    env = _monitor_env(installed, tmp_path, MONITOR_LISTEN="127.0.0.1:9478", LOG_FORMAT="json",
                       GATEWAY_URL="http://127.0.0.1:8080")
    result = run([str(installed.venv / "bin" / "gateway-monitor"), "--check-config"], env=env,
                 timeout=60)
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{installed.log}"
    assert API_KEY not in result.stdout + result.stderr


@pytest.mark.timeout(600)
def test_installed_entrypoint_rejects_a_bad_config(installed: Installed, tmp_path: Path) -> None:
    env = _monitor_env(installed, tmp_path, GATEWAY_URL="ftp://gateway")
    result = run([str(installed.venv / "bin" / "gateway-monitor"), "--check-config"], env=env,
                 timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "GATEWAY_URL" in result.stderr


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, ""


@pytest.mark.timeout(600)
def test_installed_monitor_serves_healthy_without_a_gateway(
    installed: Installed, stages: dict[str, Stage], tmp_path: Path
) -> None:
    port = _free_port()
    listen = f"127.0.0.1:{port}"
    env = _monitor_env(installed, tmp_path, MONITOR_LISTEN=listen, LOG_FORMAT="json",
                       GATEWAY_URL=f"http://127.0.0.1:{_free_port()}")  # nothing listens there
    process = subprocess.Popen([str(installed.venv / "bin" / "gateway-monitor")], env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        status = 0
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status, _ = _get(f"http://{listen}/-/healthy")
            except OSError:
                status = 0
            if status == 200:
                break
            time.sleep(0.2)
        assert status == 200, f"/-/healthy never answered 200 (exit {process.poll()})"
        _, metrics = _get(f"http://{listen}/metrics")
        assert "gateway_monitor_build_info" in metrics

        # The image's HEALTHCHECK, run with the installed interpreter.
        command = _healthcheck_command(stages["runtime"])
        command[0] = str(installed.venv / "bin" / "python")
        assert run(command, env=env, timeout=10).returncode == 0
        closed = {**env, "MONITOR_LISTEN": f"127.0.0.1:{_free_port()}"}
        assert run(command, env=closed, timeout=10).returncode != 0

        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)  # well inside terminationGracePeriodSeconds
    finally:
        if process.poll() is None:
            process.kill()
        output = process.communicate(timeout=10)[0]
    assert process.returncode is not None, output
