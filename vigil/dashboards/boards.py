"""Vigil's Grafana dashboards: the fleet, one node and its GPUs, a training job, incidents and remediation,
the canary, and Vigil's own health. Every query reads metrics of ``vigil.metrics_catalog`` only; a panel
reading a metric that another issue's service will export says so in ``awaits``."""

from __future__ import annotations

from vigil.dashboards.grafana import Board, Panel, Target, Variable

T = Target
C = 'cluster="$cluster"'
NODE = f'{C}, host="$node"'
GPU = f'{NODE}, gpu_index=~"$gpu"'
JOB = f'{C}, job_id="$job"'
RATE = "[$__rate_interval]"

CLUSTER = Variable("cluster", "Cluster", "label_values(vigil_telemetry_last_timestamp_seconds, cluster)")
NODE_VAR = Variable("node", "Node", f"label_values(vigil_telemetry_last_timestamp_seconds{{{C}}}, host)")
GPU_VAR = Variable("gpu", "GPU", f"label_values(vigil_gpu_temperature_celsius{{{NODE}}}, gpu_index)", True)
JOB_VAR = Variable("job", "Training job", f"label_values(vigil_training_step{{{C}}}, job_id)")

# A GPU is degraded while any detection about it fires (the XID, peer, truthfulness and threshold detectors).
DEGRADED = f'count by (cluster, host, gpu_index) (vigil_detection_firing{{{C}, gpu_index!=""}} == 1)'


def fleet() -> Board:
    gpus = f"vigil_gpu_temperature_celsius{{{C}}}"
    return Board(
        "vigil-fleet",
        "Vigil / Fleet overview",
        "GPUs healthy, degraded and drained, the hottest GPUs, what fires and the incidents open.",
        (
            Panel("GPUs reporting", (T(f"count({gpus})"),), "stat", width=4, height=4),
            Panel(
                "GPUs healthy",
                (T(f"count({gpus} unless on (cluster, host, gpu_index) ({DEGRADED}))"),),
                "stat",
                width=4,
                height=4,
                description="Reporting, with no detection firing about them",
            ),
            Panel(
                "GPUs degraded",
                (T(f"count({DEGRADED})"),),
                "stat",
                width=4,
                height=4,
                thresholds=((1, "red"),),
                no_value="0",
                description="A detection (XID, peers, truthfulness, thresholds) fires about them",
            ),
            Panel(
                "Remediation runs in progress",
                (T('sum(vigil_remediation_runs{state=~"planned|running|waiting_approval|verifying"}) or vector(0)'),),
                "stat",
                width=4,
                height=4,
                description="Runs the robot has not finished: planned, running, waiting for a person, verifying",
            ),
            Panel(
                "Alerts firing",
                (T("sum by (severity) (vigil_alerts_firing)", "{{severity}}"),),
                "stat",
                width=8,
                height=4,
            ),
            Panel(
                "Hot spots: hottest GPUs",
                (T(f"topk(10, {gpus})", "{{host}} GPU {{gpu_index}}", instant=True),),
                "bargauge",
                unit="celsius",
                height=9,
                thresholds=((80, "orange"), (90, "red")),
            ),
            Panel(
                "Highest detection scores",
                (T(f"topk(10, vigil_detection_score{{{C}}})", "{{alertname}} {{host}} {{gpu_index}}", instant=True),),
                "table",
                height=9,
            ),
            Panel(
                "Open incidents by priority",
                (T("sum by (priority) (vigil_incidents_open)", "{{priority}}"),),
            ),
            Panel(
                "Firing detections by alert",
                (T(f"sum by (alertname) (vigil_detection_firing{{{C}}} == 1)", "{{alertname}}"),),
            ),
            Panel(
                "GPU temperature across the fleet",
                (T(f"max({gpus})", "max"), T(f"avg({gpus})", "mean")),
                unit="celsius",
            ),
            Panel("Fleet GPU power", (T(f"sum(vigil_gpu_power_watts{{{C}}})", "total"),), unit="watt"),
        ),
        (CLUSTER,),
    )


def node() -> Board:
    def gpu_panel(title: str, metric: str, unit: str) -> Panel:
        return Panel(title, (T(f"vigil_{metric}{{{GPU}}}", "GPU {{gpu_index}}"),), unit=unit, width=8)

    return Board(
        "vigil-node",
        "Vigil / Node and GPU detail",
        "One node's GPUs and host figures, what fires about them and how fresh their telemetry is.",
        (
            gpu_panel("GPU temperature", "gpu_temperature_celsius", "celsius"),
            gpu_panel("GPU memory temperature", "gpu_memory_temperature_celsius", "celsius"),
            gpu_panel("GPU power", "gpu_power_watts", "watt"),
            gpu_panel("GPU utilisation", "gpu_utilization_ratio", "percentunit"),
            gpu_panel("GPU memory used", "gpu_memory_used_bytes", "bytes"),
            gpu_panel("SM clock", "gpu_sm_clock_hertz", "hertz"),
            gpu_panel("ECC single-bit errors (volatile)", "gpu_ecc_sbe_volatile_total", "short"),
            gpu_panel("ECC double-bit errors (volatile)", "gpu_ecc_dbe_volatile_total", "short"),
            Panel(
                "Telemetry age",
                (T(f"time() - vigil_telemetry_last_timestamp_seconds{{{NODE}}}", "{{host}}"),),
                unit="s",
                width=8,
                description="Since the newest sample's event time: a stalled agent or a stalled pipeline",
            ),
            Panel(
                "Detections about this node",
                (T(f"vigil_detection_firing{{{NODE}}}", instant=True),),
                "table",
                width=12,
                description="1 firing, 0 resolved",
            ),
            Panel(
                "Detection scores",
                (T(f"vigil_detection_score{{{NODE}}}", "{{alertname}} {{gpu_index}}"),),
                width=12,
            ),
            Panel("Host CPU", (T(f"vigil_host_cpu_utilization_ratio{{{NODE}}}", "cpu"),), unit="percentunit", width=6),
            Panel("Host memory used", (T(f"vigil_host_memory_used_bytes{{{NODE}}}", "used"),), unit="bytes", width=6),
            Panel("Host load (1 min)", (T(f"vigil_host_load1{{{NODE}}}", "load1"),), width=6),
            Panel(
                "Host network",
                (
                    T(f"rate(vigil_host_network_receive_bytes_total{{{NODE}}}{RATE})", "receive"),
                    T(f"rate(vigil_host_network_transmit_bytes_total{{{NODE}}}{RATE})", "transmit"),
                ),
                unit="Bps",
                width=6,
            ),
        ),
        (CLUSTER, NODE_VAR, GPU_VAR),
    )


def training() -> Board:
    step_s = f"vigil_training_step_seconds{{{JOB}}}"
    compute = f"vigil_training_compute_seconds{{{JOB}}}"
    return Board(
        "vigil-training",
        "Vigil / Training job",
        "A training job's progress per rank: step time, throughput, stragglers, loss and whether it hangs.",
        (
            Panel("Latest step", (T(f"max(vigil_training_step{{{JOB}}})"),), "stat", width=6, height=4),
            Panel(
                "Hung",
                (T(f"max(vigil_training_hung{{{JOB}}})"),),
                "stat",
                width=6,
                height=4,
                thresholds=((1, "red"),),
                description="1 while TrainingHang fires for the job",
            ),
            Panel(
                "Throughput",
                (T(f"sum(vigil_training_tokens_per_second{{{JOB}}})"),),
                "stat",
                unit="short",
                width=6,
                height=4,
                description="Tokens per second, all ranks",
            ),
            Panel("Ranks reporting", (T(f"count(vigil_training_step{{{JOB}}})"),), "stat", width=6, height=4),
            Panel(
                "Step time and compute",
                (
                    T(f"max({step_s})", "step (the job)"),
                    T(f"quantile(0.5, {compute})", "compute, median rank"),
                    T(f"max({compute})", "compute, slowest rank"),
                ),
                unit="s",
                description="Every rank waits for the slowest at each collective: the step time is the job's, "
                "the compute time each rank's own",
            ),
            Panel(
                "Throughput over time",
                (T(f"sum(vigil_training_tokens_per_second{{{JOB}}})", "tokens/s"),),
            ),
            Panel(
                "Stragglers: slowest ranks' compute against the median",
                (T(f"topk(5, {compute} / on () group_left () quantile(0.5, {compute}))", "rank {{rank}}"),),
                unit="percentunit",
                description="A rank's compute time over the job's median rank (1 = the median)",
            ),
            Panel(
                "Straggler detections",
                (T(f'vigil_detection_firing{{{JOB}, alertname="TrainingStraggler"}}', "rank {{rank}}"),),
                description="1 while TrainingStraggler fires about a rank",
            ),
            Panel(
                "Loss",
                (T(f"avg(vigil_training_loss{{{JOB}}})", "mean"), T(f"max(vigil_training_loss{{{JOB}}})", "max")),
            ),
            Panel(
                "Training detections",
                (T(f"vigil_detection_firing{{{JOB}}}", instant=True),),
                "table",
                description="Hang, loss spike or NaN, throughput change, stragglers: 1 firing, 0 resolved",
            ),
        ),
        (CLUSTER, JOB_VAR),
    )


def incidents() -> Board:
    return Board(
        "vigil-incidents",
        "Vigil / Incidents and remediation",
        "Alerts and incidents open, what alerting did with detections, pages sent, and remediation runs.",
        (
            Panel("Alerts firing by severity", (T("vigil_alerts_firing", "{{severity}}"),)),
            Panel(
                "Open incidents by priority and domain",
                (T("sum by (priority, domain) (vigil_incidents_open)", "{{priority}} {{domain}}"),),
            ),
            Panel(
                "Detections into alerting",
                (T(f"sum by (decision) (rate(vigil_alerting_detections_total{RATE}))", "{{decision}}"),),
                unit="ops",
                description="first (a new alert), resolved, no_change, invalid",
            ),
            Panel(
                "Notifications",
                (T(f"sum by (notifier, result) (rate(vigil_notifications_total{RATE}))", "{{notifier}} {{result}}"),),
                unit="ops",
                description="Delivery attempts: delivered, retryable, permanent",
            ),
            Panel(
                "Remediation runs by runbook and state",
                (T("sum by (runbook, state) (vigil_remediation_runs) or vector(0)", "{{runbook}} {{state}}"),),
                description="Runs in the store (dry-run plans included); 0 until the robot has planned one",
            ),
            Panel(
                "Remediation steps by action and state",
                (T("sum by (action, state) (vigil_remediation_steps) or vector(0)", "{{action}} {{state}}"),),
                description="Each step is one action on one target, with its idempotency key",
            ),
        ),
    )


def canary() -> Board:
    def p95(histogram: str) -> str:
        return f"histogram_quantile(0.95, sum by (le, probe, arm) (rate({histogram}_bucket{RATE})))"

    return Board(
        "vigil-canary",
        "Vigil / Canary",
        "Golden requests to deployed models: pass ratio and verdict per probe and arm, latency, rounds.",
        (
            Panel(
                "Pass ratio",
                (T("vigil_canary_pass_ratio", "{{probe}} {{arm}} {{version}}"),),
                unit="percentunit",
            ),
            Panel(
                "Verdict (0 pass, 1 marginal, 2 fail)",
                (T("vigil_canary_verdict", "{{probe}} {{arm}}"),),
            ),
            Panel(
                "Item latency p95",
                (T(p95("vigil_canary_item_latency_seconds"), "{{probe}} {{arm}}"),),
                unit="s",
            ),
            Panel(
                "Time to first token p95",
                (T(p95("vigil_canary_ttft_seconds"), "{{probe}} {{arm}}"),),
                unit="s",
            ),
            Panel(
                "Rounds by outcome",
                (
                    T(
                        f"sum by (probe, arm, outcome) (rate(vigil_canary_rounds_total{RATE}))",
                        "{{probe}} {{arm}} {{outcome}}",
                    ),
                ),
                unit="ops",
            ),
        ),
    )
