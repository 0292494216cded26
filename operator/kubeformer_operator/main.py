"""`kubeformer-operator`: settings from the environment, handlers registered, kopf running.

Watches every namespace, or the ones named with --namespace. With --peering, replicas of the
operator elect one active instance through kopf's peering objects (crds/kopf-peering.yaml).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import kopf
import kubernetes

from kubeformer_builder import __version__
from kubeformer_operator import metrics, names
from kubeformer_operator.config import Settings, SettingsError, load_settings
from kubeformer_operator.handlers import register
from kubeformer_operator.kube import Kube
from kubeformer_operator.reconcile import Context

KEDA_CRD = "scaledobjects.keda.sh"
SERVICE_MONITOR_CRD = "servicemonitors.monitoring.coreos.com"


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubeformer-operator", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--namespace", "-n", action="append", default=[], help="watch only these (repeatable)"
    )
    parser.add_argument(
        "--liveness", default="http://0.0.0.0:8081/healthz", help="health endpoint for probes"
    )
    parser.add_argument("--verbose", "-v", action="store_true")
    return parser


def api_client() -> kubernetes.client.ApiClient:
    """In a pod: the service account; elsewhere: KUBECONFIG or ~/.kube/config."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        kubernetes.config.load_incluster_config()
    else:
        kubernetes.config.load_kube_config()
    api = kubernetes.client.ApiClient()
    api.user_agent = f"kubeformer-operator/{__version__}"  # tells our requests apart in audit logs
    return api


def make_context(settings: Settings, kube: Kube) -> Context:
    """Optional integrations: as configured, or detected from the CRDs installed right now."""
    keda = settings.use_keda if settings.use_keda is not None else kube.crd_installed(KEDA_CRD)
    monitor = settings.use_service_monitor
    if monitor is None:
        monitor = kube.crd_installed(SERVICE_MONITOR_CRD)
    return Context(kube=kube, settings=settings, keda=keda, service_monitor=monitor)


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"kubeformer-operator: {error}", file=sys.stderr)
        return 2
    ctx = make_context(settings, Kube(api_client(), settings.field_manager))
    registry = kopf.OperatorRegistry()
    register(registry, ctx)
    kopf.on.login(registry=registry)(kopf.login_via_client)
    metrics.serve(settings.metrics_port)
    logging.getLogger("kubeformer.operator").info(
        "operator starting: KEDA %s, ServiceMonitor %s, peering %s",
        ctx.keda,
        ctx.service_monitor,
        settings.peering or "off (standalone)",
    )
    kopf.run(
        registry=registry,
        settings=kopf_settings(settings),
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness,
        standalone=settings.peering is None,
        peering_name=settings.peering,
        priority=settings.peering_priority,
    )
    return 0


def kopf_settings(settings: Settings) -> kopf.OperatorSettings:
    """kopf's records in annotations under our prefix, leaving status to users; Events only on request."""
    kopf_settings = kopf.OperatorSettings()
    kopf_settings.persistence.finalizer = names.FINALIZER
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kubeformer.dev")
    kopf_settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="kubeformer.dev", key="last-handled-configuration"
    )
    # Handler logs stay logs; the Events users see are the ones `handlers.announce` posts.
    kopf_settings.posting.level = logging.WARNING
    kopf_settings.execution.max_workers = 16
    # Reconnect watches regularly so that an API server restart never leaves a stale stream.
    kopf_settings.watching.server_timeout = 300
    kopf_settings.watching.client_timeout = 330
    if settings.peering:
        kopf_settings.peering.mandatory = True
    return kopf_settings


if __name__ == "__main__":
    sys.exit(main())
