"""The TypeScript client built on types generated from /openapi.json (typescript/), for real."""

import json
import subprocess
from pathlib import Path

CLIENT = Path(__file__).parent / "typescript" / "dist" / "client.js"


def test_generated_typescript_client_manages_a_task(api):
    assert CLIENT.exists(), f"{CLIENT} is missing: `make e2e` generates and compiles it"
    result = subprocess.run(
        ["node", CLIENT, api.url], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "created": 201,
        "completed": True,
        "listed": ["Try the TypeScript client"],
        "deleted": 204,
        "after": 404,
    }
