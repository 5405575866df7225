"""Parse + aggregate 1,000 realistic aws-node payloads: our core vs prometheus_client's parser.

Both paths start from the payload bytes and end with the same ``aggregate()`` call against the
previous collection's state; only the parse + per-node reduction differs. Payloads are modern
(v1.23-shaped awscni families, go_/process_/promhttp_ families of a real node), 10-20 KB each.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cni_metrics.core.aggregate import aggregate
from cni_metrics.core.model import Aggregate, ClusterState, NodeInput, NodeMetrics
from cni_metrics.core.node import read_node_metrics, reduce_samples
from cni_metrics.core.parser import clear_caches
from cni_metrics.core.state_codec import dump_state, load_state
from prometheus_client.parser import text_string_to_metric_families

NODES = 1_000
ROUNDS = 3
TARGET_RATIO = 5.0
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
_REAL = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "aws-node" / "cni_test1.data"
_APIS = (
    "AssignPrivateIpAddresses", "AttachNetworkInterface", "CreateNetworkInterface", "CreateTags",
    "DeleteNetworkInterface", "DescribeInstances", "DescribeNetworkInterfaces", "DescribeSubnets",
    "DetachNetworkInterface", "GetMetadata", "ModifyNetworkInterfaceAttribute", "UnassignPrivateIpAddresses",
)  # fmt: skip
_BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf")


def _go_block() -> str:
    """The go_/process_ lines of a real payload plus the families newer Go clients add."""
    real = [ln for ln in _REAL.read_text().splitlines() if "awscni_" not in ln]
    extra = [
        "# HELP go_gc_gogc_percent Heap size target percentage configured by the user, otherwise 100.",
        "# TYPE go_gc_gogc_percent gauge",
        "go_gc_gogc_percent 100",
        "# HELP go_gomemlimit_bytes Go runtime memory limit configured by the user, otherwise math.MaxInt64.",
        "# TYPE go_gomemlimit_bytes gauge",
        "go_gomemlimit_bytes 9.223372036854776e+18",
        "# HELP go_info Information about the Go environment.",
        '# TYPE go_info gauge\ngo_info{version="go1.26.4"} 1',
        "# HELP go_sched_gomaxprocs_threads The current runtime.GOMAXPROCS setting.",
        "# TYPE go_sched_gomaxprocs_threads gauge\ngo_sched_gomaxprocs_threads 4",
        "# HELP process_network_receive_bytes_total Number of bytes received by the process.",
        "# TYPE process_network_receive_bytes_total counter\nprocess_network_receive_bytes_total 4.81203e+08",
        "# HELP promhttp_metric_handler_requests_total Total number of scrapes by HTTP status code.",
        "# TYPE promhttp_metric_handler_requests_total counter",
        'promhttp_metric_handler_requests_total{code="200"} 10428',
        'promhttp_metric_handler_requests_total{code="500"} 0',
        'promhttp_metric_handler_requests_total{code="503"} 0',
    ]
    return "\n".join(real + extra) + "\n"


def _family(lines: list[str], name: str, kind: str, series: list[tuple[str, float]]) -> None:
    lines.append(f"# HELP {name} The {name.removeprefix('awscni_').replace('_', ' ')}")
    lines.append(f"# TYPE {name} {kind}")
    lines.extend(f"{name}{labels} {value:g}" for labels, value in series)


def make_payload(rng: random.Random, step: int, go_block: str) -> bytes:
    """One modern aws-node payload; ``step`` moves its counters on."""
    ips = rng.randint(10, 45)
    assigned = rng.randint(0, ips)
    lines: list[str] = []
    _family(lines, "awscni_add_ip_req_count", "counter", [("", 500 + 7 * step)])
    _family(lines, "awscni_assigned_ip_addresses", "gauge", [("", assigned)])
    _family(
        lines,
        "awscni_assigned_ip_per_cidr",
        "gauge",
        [
            (f'{{cidr="10.{rng.randint(0, 255)}.{i // 250}.{i % 250}/32"}}', int(i < assigned))
            for i in range(ips)
        ],
    )
    _family(
        lines,
        "awscni_assigned_ip_per_eni",
        "gauge",
        [(f'{{eni="eni-{i:017x}"}}', assigned / 3) for i in range(3)],
    )
    latency: list[tuple[str, float]] = []
    for api in _APIS[: rng.randint(6, len(_APIS))]:
        labels = f'api="{api}",error="false",status="200"'
        count = rng.randint(1, 5000) + step
        latency += [(f"{{{labels}}}", count * 11.5), (f"{{{labels}}}", count)]
    lines.append("# HELP awscni_aws_api_latency_ms AWS API call latency in ms")
    lines.append("# TYPE awscni_aws_api_latency_ms summary")
    for i, (labels, value) in enumerate(latency):
        lines.append(f"awscni_aws_api_latency_ms_{'sum' if i % 2 == 0 else 'count'}{labels} {value:g}")
    if rng.random() < 0.3:
        _family(
            lines,
            "awscni_aws_utils_error_count",
            "counter",
            [
                (
                    '{error="DescribeNetworkInterfaces: RequestLimitExceeded: Request limit exceeded.",'
                    'fn="getENIs"}',
                    step,
                )
            ],
        )
    _family(lines, "awscni_build_info", "gauge", [('{goversion="go1.26.4",version="v1.23.1"}', 1)])
    _family(lines, "awscni_del_ip_req_count", "counter", [('{reason="PodDeleted"}', 480 + 6 * step)])
    fns = ("AssignPrivateIpAddresses", "DescribeInstances", "DescribeNetworkInterfaces", "DescribeSubnets")
    _family(lines, "awscni_ec2api_req_count", "counter", [(f'{{fn="{fn}"}}', 5 + step) for fn in fns])
    _family(lines, "awscni_eni_allocated", "gauge", [("", 3)])
    _family(lines, "awscni_eni_max", "gauge", [("", 4)])
    _family(lines, "awscni_force_removed_enis", "counter", [("", 0)])
    _family(lines, "awscni_force_removed_ips", "counter", [("", 0)])
    _family(lines, "awscni_ip_max", "gauge", [("", 45)])
    actions = ("decreaseDatastorePool", "increaseDatastorePool", "nodeIPPoolReconcile", "nodeInit")
    _family(lines, "awscni_ipamd_action_inprogress", "gauge", [(f'{{fn="{fn}"}}', 0) for fn in actions])
    for hist in (
        "awscni_ipamd_node_initialization_duration_seconds",
        "awscni_ipamd_startup_duration_seconds",
    ):
        series = [(f'{{success="true",le="{le}"}}', int(i > 8)) for i, le in enumerate(_BUCKETS)]
        lines.append(f"# HELP {hist} Duration\n# TYPE {hist} histogram")
        lines.extend(f"{hist}_bucket{labels} {value}" for labels, value in series)
        lines.append(f'{hist}_sum{{success="true"}} 2.31\n{hist}_count{{success="true"}} 1')
    _family(lines, "awscni_no_available_ip_addresses", "counter", [("", step // 3)])
    _family(lines, "awscni_reconcile_count", "counter", [('{fn="eniDataStorePoolReconcileAdd"}', 2 + step)])
    _family(lines, "awscni_total_ip_addresses", "gauge", [("", ips)])
    _family(lines, "awscni_total_ipv4_prefixes", "gauge", [("", 0)])
    return ("\n".join(lines) + "\n" + go_block).encode()


def _reference_metrics(data: bytes) -> NodeMetrics:
    """prometheus_client's parser + the same reduction (it renames counter samples to ``*_total``)."""
    samples = [
        s if s.name.startswith("awscni_") and not s.name.endswith("_total") else s._replace(name=s.name[:-6])
        for family in text_string_to_metric_families(data.decode())
        if family.name.startswith("awscni_")
        for s in family.samples
    ]
    return reduce_samples(samples)


def _collect(
    payloads: list[bytes], read: Callable[[bytes], NodeMetrics], previous: ClusterState
) -> Aggregate:
    nodes = [NodeInput(key=f"pod-{i}", name=f"aws-node-{i}", metrics=read(p)) for i, p in enumerate(payloads)]
    return aggregate(nodes, previous, now=T0 + timedelta(minutes=1))


def _timed(fn: Callable[[], Aggregate]) -> tuple[float, Aggregate]:
    """CPU seconds of this process (robust on a shared machine) and the result."""
    started = time.process_time()
    result = fn()
    return time.process_time() - started, result


def main() -> None:
    """Run the comparison and print MB/s, µs per node and the ratio."""
    rng = random.Random(1234)
    go_block = _go_block()
    seeds = [rng.random() for _ in range(NODES)]
    before = [make_payload(random.Random(s), 0, go_block) for s in seeds]
    after = [make_payload(random.Random(s), 1, go_block) for s in seeds]
    size = sum(map(len, after))
    sizes = sorted(map(len, after))
    print(f"payloads: {NODES} nodes, {size / 1e6:.1f} MB, {sizes[0] / 1e3:.1f}-{sizes[-1] / 1e3:.1f} KB each")
    previous = aggregate(
        [NodeInput(f"pod-{i}", f"aws-node-{i}", read_node_metrics(p)) for i, p in enumerate(before)],
        None,
        now=T0,
    ).state

    # Interleaved rounds, best of each: the machine may be shared, and both paths see the same load.
    ours_s = ref_s = float("inf")
    for _ in range(ROUNDS):
        clear_caches()  # cold: only repetition within this collection helps
        seconds, ours = _timed(lambda: _collect(after, read_node_metrics, previous))
        ours_s = min(ours_s, seconds)
        seconds, ref = _timed(lambda: _collect(after, _reference_metrics, previous))
        ref_s = min(ref_s, seconds)
    assert ours.metrics == ref.metrics, "the two paths disagree"
    assert ours.counter_totals == ref.counter_totals
    ratio = ref_s / ours_s
    for label, seconds in (("cni_metrics core", ours_s), ("prometheus_client", ref_s)):
        print(
            f"{label:<18} parse+aggregate {seconds * 1e3:8.1f} ms  {size / seconds / 1e6:7.1f} MB/s  "
            f"{seconds / NODES * 1e6:7.1f} µs/node"
        )
    inputs = [NodeInput(f"pod-{i}", f"aws-node-{i}", read_node_metrics(p)) for i, p in enumerate(after)]
    agg_s, _ = _timed(lambda: aggregate(inputs, previous, now=T0 + timedelta(minutes=1)))
    print(
        f"{'(aggregate alone)':<18} {'':15} {agg_s * 1e3:8.1f} ms  {'':13} {agg_s / NODES * 1e6:7.1f} µs/node"
    )
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    print(f"ratio: {ratio:.1f}x faster (target >= {TARGET_RATIO:.0f}x: {verdict})")
    published = {m.name: m.value for m in ours.metrics}
    print(f"check: addReqCount increase {published['addReqCount']:g} (= 7 x {NODES} nodes)")

    started = time.process_time()
    blob = dump_state(ours.state)
    load_state(blob)
    state_ms = (time.process_time() - started) * 1e3
    print(f"state: {len(blob) / 1e3:.0f} KB for {NODES} pods, dump+load {state_ms:.1f} ms")
