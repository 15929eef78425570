"""The web-tls component (deploy/kubernetes/components/web-tls): with TLS on, the kubelet's
probes ask over HTTPS, for the Deployment of the base and the StatefulSet of the sharded
overlay alike (issue 21, item 10: the probes asked plain HTTP and failed once TLS was on).

| change (tried, seen red) | failing test |
|---|---|
| the StatefulSet target left out of the component | test_the_web_tls_component_..._[sharded] |
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.stack import ROOT

KUBERNETES = ROOT / "deploy" / "kubernetes"


@pytest.mark.parametrize(
    ("under", "kind"), [("base", "Deployment"), ("overlays/sharded", "StatefulSet")]
)
def test_the_web_tls_component_makes_the_probes_https(
    kubectl: str, tmp_path: Path, under: str, kind: str
) -> None:
    overlay = {
        "resources": [os.path.relpath(KUBERNETES / under, tmp_path)],
        "components": [os.path.relpath(KUBERNETES / "components" / "web-tls", tmp_path)],
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(overlay), encoding="utf-8")
    result = subprocess.run(
        [kubectl, "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    (workload,) = [doc for doc in yaml.safe_load_all(result.stdout) if doc and doc["kind"] == kind]
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    for probe, path in (("livenessProbe", "/-/healthy"), ("readinessProbe", "/-/ready")):
        assert container[probe]["httpGet"] == {"path": path, "port": "metrics", "scheme": "HTTPS"}
