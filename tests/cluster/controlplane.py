"""Start and stop one control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok.

Everything listens on 127.0.0.1 on free ports and keeps its state, certificates, logs and pid files in
one directory, so `stop` works from the object that started it or from a fresh `attach` to that
directory. The API server runs as a production cluster's would in the respects operators depend on:
TLS with client certificates, RBAC authorization, service-account tokens signed by the controller
manager, PodSecurity admission; the controller manager runs its default controllers (Job,
Deployment/ReplicaSet, garbage collector, namespace, service-account tokens, ...); kwok plays the
kubelet of one fake node.
"""

from __future__ import annotations

import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from tests.cluster import kwok, pki
from tests.cluster.build import Binaries
from tests.cluster.kubeconfig import write_kubeconfig
from tests.cluster.processes import Component, ComponentError, free_port, start, stop_all, wait_until

# Stop order: the clients before the API server, the API server before its storage.
COMPONENTS = ("kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")
NODE_NAME = "kwok-node-0"
START_TIMEOUT_SECONDS = 120.0  # generous: two shared cores; a warm start takes seconds


class ControlPlane:
    """A control plane in `state_dir`; `kubeconfig` (admin, system:masters) is written once all is up."""

    def __init__(
        self, state_dir: Path, binaries: Binaries, detached: bool = False, audit: bool = False
    ) -> None:
        """`detached`: components outlive this process (for `make cluster`); otherwise they die with it.

        `audit`: the API server writes one JSON line per request (user, user agent, verb, resource) to
        `audit_log`, for benchmarks that count a client's requests.
        """
        self.state_dir = state_dir
        self.binaries = binaries
        self.detached = detached
        self.audit_log = state_dir / "audit.log" if audit else None
        self.kubeconfig = state_dir / "kubeconfig"
        self._admin_kubeconfig = state_dir / "kubeconfigs" / f"{pki.ADMIN.file_stem}.yaml"
        self.logs = state_dir / "logs"
        self.server = ""
        self.startup_seconds = 0.0
        self._components: list[Component] = []
        self._client: kubernetes.client.ApiClient | None = None

    # ----- lifecycle -----

    def start(self) -> ControlPlane:
        began = time.monotonic()
        try:
            self._start_all()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        stop(self.state_dir)
        self._components.clear()

    def _start_all(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        keys = pki.create_pki(self.state_dir / "pki")
        etcd_url = self._start_etcd()
        api_port = free_port()
        self.server = f"https://127.0.0.1:{api_port}"
        kubeconfigs = {
            identity.file_stem: write_kubeconfig(
                self.state_dir / "kubeconfigs" / f"{identity.file_stem}.yaml",
                self.server,
                keys.ca.cert,
                keys.clients[identity.file_stem],
            )
            for identity in pki.CLIENTS
        }
        apiserver = self._launch("kube-apiserver", self._apiserver_args(api_port, etcd_url, keys))
        readyz = _probe(
            f"{self.server}/readyz", _tls_context(keys.ca.cert, keys.clients[pki.ADMIN.file_stem])
        )
        wait_until(readyz, "kube-apiserver /readyz", [apiserver], START_TIMEOUT_SECONDS)

        kcm_port, scheduler_port = free_port(), free_port()
        self._launch(
            "kube-controller-manager",
            self._controller_manager_args(kcm_port, kubeconfigs[pki.CONTROLLER_MANAGER.file_stem], keys),
        )
        self._launch(
            "kube-scheduler", self._scheduler_args(scheduler_port, kubeconfigs[pki.SCHEDULER.file_stem])
        )
        self._install_kwok_stages()
        self._launch("kwok", self._kwok_args(kubeconfigs[pki.KWOK.file_stem]))
        self.apply(kwok.fake_node(NODE_NAME))

        for name, port in (("kube-controller-manager", kcm_port), ("kube-scheduler", scheduler_port)):
            healthz = _probe(f"https://127.0.0.1:{port}/healthz", _tls_context())
            wait_until(healthz, f"{name} /healthz", self._components, START_TIMEOUT_SECONDS)
        wait_until(
            self._node_ready, f"node {NODE_NAME} Ready (kwok)", self._components, START_TIMEOUT_SECONDS
        )
        # The first service account proves the controller manager reaches the API server with its identity.
        wait_until(
            lambda: self._service_account_exists("default"),
            "service account default/default (kube-controller-manager)",
            self._components,
            START_TIMEOUT_SECONDS,
        )
        # Last, so that a tool waiting for this file finds a control plane that runs pods.
        self.kubeconfig.write_bytes(self._admin_kubeconfig.read_bytes())
        self.kubeconfig.chmod(0o600)

    def restart_apiserver(self) -> float:
        """Stop kube-apiserver and start it again on the same port and etcd, as a crash or an upgrade
        looks to clients: every watch breaks, requests fail until it is back. Returns the seconds it
        took to be ready again."""
        began = time.monotonic()
        old = next(c for c in self._components if c.name == "kube-apiserver")
        stop_all(self.state_dir, [old.name])
        self._components.remove(old)
        apiserver = self._launch(old.name, list(old.process.args))
        readyz = lambda: self.kubectl("get", "--raw", "/readyz", check=False).returncode == 0  # noqa: E731
        wait_until(readyz, "kube-apiserver /readyz after a restart", [apiserver], START_TIMEOUT_SECONDS)
        return time.monotonic() - began

    def _start_etcd(self) -> str:
        client, peer = free_port(), free_port()
        url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        etcd = self._launch(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=kubeformer-test",
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls={url}",
                f"--advertise-client-urls={url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=kubeformer-test={peer_url}",
                # Test data is thrown away; fsync would only make every write wait for the disk.
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        wait_until(_probe(f"{url}/health"), "etcd /health", [etcd], START_TIMEOUT_SECONDS)
        return url

    def _apiserver_args(self, port: int, etcd_url: str, keys: pki.Pki) -> list[str]:
        return [
            str(self.binaries.kube_apiserver),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.state_dir / 'pki'}",
            f"--tls-cert-file={keys.serving.cert}",
            f"--tls-private-key-file={keys.serving.key}",
            f"--client-ca-file={keys.ca.cert}",
            f"--requestheader-client-ca-file={keys.front_proxy_ca.cert}",
            f"--requestheader-allowed-names={pki.FRONT_PROXY_CLIENT}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={keys.front_proxy_client.cert}",
            f"--proxy-client-key-file={keys.front_proxy_client.key}",
            f"--service-account-key-file={keys.service_account_pub}",
            f"--service-account-signing-key-file={keys.service_account_key}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={pki.SERVICE_CLUSTER_IP_RANGE}",
            "--authorization-mode=RBAC",
            # On by default since 1.25; named so that turning it off takes a visible edit.
            "--enable-admission-plugins=PodSecurity",
            # As kubeadm clusters do: privileged pods are allowed in general and refused by PodSecurity.
            "--allow-privileged=true",
            # Endpoints may not point at loopback, and no pod here needs the in-cluster `kubernetes` Service.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            "--v=1",
            *self._audit_args(),
        ]

    def _audit_args(self) -> list[str]:
        if self.audit_log is None:
            return []
        policy = self.state_dir / "audit-policy.yaml"
        rule = {"level": "Metadata", "omitStages": ["RequestReceived"]}
        policy.write_text(
            yaml.safe_dump({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [rule]})
        )
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
        ]

    def _controller_manager_args(self, port: int, kubeconfig: Path, keys: pki.Pki) -> list[str]:
        return [
            str(self.binaries.kube_controller_manager),
            *_client_flags(kubeconfig),
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.state_dir / 'kube-controller-manager'}",
            # The default set: Job, Deployment, ReplicaSet, garbage collector, namespace,
            # serviceaccount and serviceaccount-token, node lifecycle, ... as in a real cluster.
            "--controllers=*",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={keys.service_account_key}",
            f"--root-ca-file={keys.ca.cert}",
            f"--cluster-signing-cert-file={keys.ca.cert}",
            f"--cluster-signing-key-file={keys.ca.key}",
            "--leader-elect=false",
            "--v=1",
        ]

    def _scheduler_args(self, port: int, kubeconfig: Path) -> list[str]:
        return [
            str(self.binaries.kube_scheduler),
            *_client_flags(kubeconfig),
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.state_dir / 'kube-scheduler'}",
            "--leader-elect=false",
            "--v=1",
        ]

    def _kwok_args(self, kubeconfig: Path) -> list[str]:
        # An empty --config keeps a user's ~/.kwok/kwok.yaml (which may define Stages) out of the tests.
        config = self.state_dir / "kwok.yaml"
        config.write_text("")
        return [
            str(self.binaries.kwok),
            f"--config={config}",
            f"--kubeconfig={kubeconfig}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={'='.join(kwok.NODE_ANNOTATION)}",
            f"--node-lease-duration-seconds={kwok.NODE_LEASE_SECONDS}",
            "--cidr=10.244.0.0/16",
            "--node-ip=10.245.0.1",
            "--enable-crds=Stage",
        ]

    def _install_kwok_stages(self) -> None:
        assets = self.binaries.kwok_assets
        crd = kwok.stage_crd(assets)
        self.apply(crd)
        self.wait_established(crd)
        self.apply(*kwok.default_stages(assets))

    def wait_established(self, crd: dict[str, Any], timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Wait until the CRD serves its resource, polling its conditions while watching every component.

        Seen once in five `make cluster` runs right after `make cluster-down` on two busy shared cores:
        a fixed 60 s `kubectl wait` ran out. This waits as long as the other start-up steps, applies the
        CRD again if it is not there (an apply that raced the API server's CRD controllers), fails at
        once when its names are refused, and a timeout reports the conditions seen and the logs.
        """
        name, seen = crd["metadata"]["name"], {"conditions": "none yet"}

        def established() -> bool:
            got = self.kubectl("get", "crd", name, "-o", "json", check=False)
            if got.returncode != 0:
                self.apply(crd)
                seen["conditions"] = got.stderr.strip()
                return False
            conditions = {
                c["type"]: c for c in yaml.safe_load(got.stdout).get("status", {}).get("conditions", [])
            }
            seen["conditions"] = str(list(conditions.values()))
            names = conditions.get("NamesAccepted", {})
            if names.get("status") == "False":
                raise ComponentError(f"CRD {name}: names refused: {names.get('message')}")
            return conditions.get("Established", {}).get("status") == "True"

        try:
            wait_until(established, f"CRD {name} Established", self._components, timeout, interval=0.5)
        except ComponentError as error:
            raise ComponentError(f"{error}\nlast conditions of {name}: {seen['conditions']}") from None

    def _launch(self, name: str, argv: list[str]) -> Component:
        component = start(name, argv, self.state_dir, self.detached)
        self._components.append(component)
        return component

    # ----- clients -----

    def api_client(self) -> kubernetes.client.ApiClient:
        """A new Python client for the admin user; close it (or use it as a context manager) when done."""
        return kubernetes.config.new_client_from_config(config_file=str(self._admin_kubeconfig))

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess:
        """Run the kubectl built with the control plane against it; stdout and stderr are captured as text."""
        proc = subprocess.run(
            [str(self.binaries.kubectl), f"--kubeconfig={self._admin_kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout, proc.stderr)
        return proc

    def apply(self, *objects: dict[str, Any]) -> None:
        """Server-side apply objects (as the `kubeformer-tests` field manager)."""
        docs = yaml.safe_dump_all(objects, sort_keys=False)
        self.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=kubeformer-tests",
            "-f",
            "-",
            input=docs,
        )

    def apply_stage(self, stage: dict[str, Any]) -> None:
        """Add or replace a kwok Stage; kwok picks it up for pods that change from now on."""
        self.apply(stage)

    def delete_stage(self, name: str) -> None:
        self.kubectl("delete", "stages.kwok.x-k8s.io", name, "--ignore-not-found")

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> str:
        """Create a namespace and wait for its `default` service account, which pods need to be admitted."""
        namespace = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": labels or {}},
        }
        self.apply(namespace)
        wait_until(
            lambda: self._service_account_exists(name),
            f"service account {name}/default",
            self._components,
        )
        return name

    def _service_account_exists(self, namespace: str) -> bool:
        try:
            self._core().read_namespaced_service_account("default", namespace)
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def _node_ready(self) -> bool:
        try:
            node = self._core().read_node(NODE_NAME)
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return False
            raise
        return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])

    def _core(self) -> kubernetes.client.CoreV1Api:
        # One client for the many readiness polls: a kubectl process per poll would eat a shared core.
        if self._client is None:
            self._client = self.api_client()
        return kubernetes.client.CoreV1Api(self._client)


def stop(state_dir: Path) -> None:
    """Stop the components recorded in `state_dir`, whoever started them."""
    stop_all(state_dir, list(COMPONENTS))


def _client_flags(kubeconfig: Path) -> list[str]:
    # The same identity authenticates the component's own /healthz callers through the API server.
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
    ]


def _probe(url: str, context: ssl.SSLContext | None = None) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    return ready


def _tls_context(ca: Path | None = None, client: pki.CertPair | None = None) -> ssl.SSLContext:
    """Verifies `ca` when given; otherwise nothing: components serve /healthz with self-signed certs."""
    context = ssl.create_default_context(cafile=str(ca)) if ca else ssl._create_unverified_context()
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    return context
