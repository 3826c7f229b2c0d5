"""The Dockerfile's command and health check, run outside a container (docker cannot run
here): its CMD starts the server as written but for the repository folder and the ports,
and its HEALTHCHECK command reports healthy once the server is ready."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from triton_core.testing import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
BIN = Path(sys.executable).parent


def instruction(name: str) -> str:
    """The last such instruction of the final stage, continuation lines joined."""
    joined = DOCKERFILE.replace("\\\n", " ")
    found = re.findall(rf"^{name}\s+(.*)$", joined, flags=re.M)
    assert found, f"no {name} in the Dockerfile"
    return found[-1]


def test_image_shape():
    final_stage = DOCKERFILE.rsplit("\nFROM ", 1)[1]
    assert re.search(r"^USER 1000$", final_stage, flags=re.M)  # not root
    assert instruction("EXPOSE").split() == ["8000", "8001", "8002"]
    assert not re.search(r"^ENTRYPOINT", final_stage, flags=re.M)  # KServe's args replace CMD whole
    assert re.search(r"^ARG BACKENDS=", DOCKERFILE, flags=re.M)


def test_cmd_serves_and_healthcheck_sees_ready(tmp_path):
    cmd = json.loads(instruction("CMD"))
    health = json.loads(instruction("HEALTHCHECK").split("CMD", 1)[1])
    assert cmd[0] == "tritonserver" and "--model-repository=/models" in cmd
    repo = ROOT / "examples" / "model_repository"
    http, grpc, metrics = free_port(), free_port(), free_port()
    args = [str(BIN / cmd[0])] + [
        f"--model-repository={repo}" if a == "--model-repository=/models" else a for a in cmd[1:]]
    args += [f"--http-port={http}", f"--grpc-port={grpc}", f"--metrics-port={metrics}",
             "--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1"]
    assert health[:2] == ["python", "-c"] and "127.0.0.1:8000/v2/health/ready" in health[2]
    check = [sys.executable, "-c", health[2].replace("127.0.0.1:8000", f"127.0.0.1:{http}")]
    assert subprocess.run(check, capture_output=True).returncode != 0  # nothing listens: unhealthy
    env = {k: v for k, v in os.environ.items() if k != "TRITON_CORE_DISABLE_PLUGIN_AUTOLOAD"}
    log = tmp_path / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        def healthy() -> bool:
            assert server.poll() is None, log.read_text()
            return subprocess.run(check, capture_output=True).returncode == 0

        wait_until(healthy, "the HEALTHCHECK command to pass", timeout=90)
    finally:
        server.terminate()
        server.wait(timeout=60)
