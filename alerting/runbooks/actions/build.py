"""The actions one alerting process runs, built from ``alerting.remediation``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vigil.alerting.runbooks.actions import ActionSet, Wait
from vigil.alerting.runbooks.actions.fleet import Channel, fleet_actions
from vigil.alerting.runbooks.actions.host import (
    DESTRUCTIVE,
    TARGETS,
    WEBHOOK_SCHEMAS,
    CommandAction,
    GpuReset,
    WebhookAction,
)
from vigil.alerting.runbooks.actions.serving import serving_actions
from vigil.alerting.runbooks.actions.slurm import Scontrol, slurm_actions
from vigil.alerting.runbooks.config import ModelServerConfig, RemediationConfig

from vigil.clock import Clock

_HOOK_URLS = {
    "node.reboot": "reboot_url",
    "rma.open": "rma_url",
    "owner.notify": "owner_url",
    "webhook": "webhook_url",
    "model.rollback": "rollback_url",
    "serving.remove": "serving_url",
}


def build_actions(config: RemediationConfig, clock: Clock, channel: Channel | None = None) -> ActionSet:
    slurm = config.slurm
    env = {"SLURM_CONF": str(slurm.conf)} if slurm.conf is not None else {}
    scontrol = Scontrol(scontrol=slurm.scontrol, scancel=slurm.scancel, env=env, timeout=slurm.timeout)
    actions: list[Any] = [Wait(), *slurm_actions(scontrol)]
    actions.append(GpuReset(config.gpu.nvidia_smi, config.gpu.prefix))
    hooks = config.hooks
    if hooks.reboot_command:
        actions.append(CommandAction("node.reboot", hooks.reboot_command, destructive=True))
    for name, field in _HOOK_URLS.items():
        url = getattr(hooks, field)
        if url is not None and not (name == "node.reboot" and hooks.reboot_command):
            schema = WEBHOOK_SCHEMAS[name]
            actions.append(
                WebhookAction(name, url.reveal(), schema, name in DESTRUCTIVE, TARGETS.get(name), hooks.timeout)
            )
    if config.kubernetes.enabled:
        from vigil.alerting.runbooks.actions.kubernetes import api_client, kubernetes_actions

        kube = config.kubernetes
        api = api_client(str(kube.kubeconfig) if kube.kubeconfig else None, kube.host)
        actions += kubernetes_actions(api, kube.taint_key, kube.drain_deadline)
    if config.fleet.enabled and channel is not None:
        actions += fleet_actions(channel, clock, config.fleet.timeout)
    serving = config.serving
    actions += serving_actions(serving.servers, serving.node_url, serving.timeout)
    return ActionSet(actions, config.aliases)


def catalog_actions(aliases: Mapping[str, str] | None = None) -> ActionSet:
    """Every action kind with a placeholder backend: what ``vigil runbooks check`` validates against when
    no config says which hooks exist (a runbook may name any action Vigil has)."""
    from vigil.alerting.runbooks.actions.fleet import MemoryChannel
    from vigil.alerting.runbooks.actions.kubernetes import api_client, kubernetes_actions

    actions: list[Any] = [Wait(), *slurm_actions(Scontrol()), GpuReset(), CommandAction("node.reboot", ["true"], True)]
    for name, schema in WEBHOOK_SCHEMAS.items():
        if name != "node.reboot":
            actions.append(WebhookAction(name, "http://127.0.0.1/", schema, name in DESTRUCTIVE, TARGETS.get(name)))
    actions += kubernetes_actions(api_client(None, "http://127.0.0.1"), "vigil.io/gpu-unhealthy", 300.0)
    actions += fleet_actions(MemoryChannel(), None, 60.0)
    placeholder = {"_": ModelServerConfig(url="http://127.0.0.1/")}
    actions += serving_actions(placeholder, "http://127.0.0.1/{node}", 30.0)
    return ActionSet(actions, aliases)
