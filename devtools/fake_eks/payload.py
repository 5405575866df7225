"""An aws-node's IPAM state and the Prometheus text it serves, in the modern or the old CNI shape."""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from fake_eks.scenario import INSTANCE_TYPES

Labels = tuple[tuple[str, str], ...]

GAUGE_FAMILIES = (
    "awscni_assigned_ip_addresses",
    "awscni_total_ip_addresses",
    "awscni_ip_max",
    "awscni_eni_allocated",
    "awscni_eni_max",
    "awscni_total_ipv4_prefixes",
    "awscni_assigned_ip_per_cidr",
    "awscni_assigned_ip_per_eni",
    "awscni_ipamd_action_inprogress",
)
COUNTER_FAMILIES = (
    "awscni_add_ip_req_count",
    "awscni_del_ip_req_count",
    "awscni_no_available_ip_addresses",
    "awscni_ipamd_error_count",
    "awscni_reconcile_count",
    "awscni_pod_eni_error_count",
    "awscni_aws_api_error_count",
    "awscni_aws_utils_error_count",
    "awscni_ec2api_req_count",
    "awscni_ec2api_error_count",
    "awscni_force_removed_enis",
    "awscni_force_removed_ips",
)
LATENCY = "awscni_aws_api_latency_ms"
UNLABELLED_COUNTERS = (
    "awscni_add_ip_req_count",
    "awscni_no_available_ip_addresses",
    "awscni_force_removed_enis",
    "awscni_force_removed_ips",
)
# Typed gauge before CNI v1.19 although monotonic.
OLD_GAUGE_TYPED = frozenset(
    {
        "awscni_add_ip_req_count",
        "awscni_pod_eni_error_count",
        "awscni_aws_api_error_count",
        "awscni_force_removed_enis",
        "awscni_force_removed_ips",
    }
)
OLD_ABSENT = frozenset(
    {"awscni_ec2api_req_count", "awscni_ec2api_error_count", "awscni_no_available_ip_addresses"}
)
HELP = {
    "awscni_add_ip_req_count": "The number of add IP address requests",
    "awscni_del_ip_req_count": "The number of delete IP address requests",
    "awscni_no_available_ip_addresses": (
        "The number of pod IP assignments that fail due to no available IP addresses"
    ),
    "awscni_ipamd_error_count": "The number of errors encountered in ipamd",
    "awscni_reconcile_count": "The number of times ipamd reconciles on ENIs and IP/Prefix addresses",
    "awscni_pod_eni_error_count": "The number of errors encountered for pod ENIs",
    "awscni_aws_api_error_count": "The number of times AWS API returns an error",
    "awscni_aws_utils_error_count": "The number of errors not handled in awsutils library",
    "awscni_ec2api_req_count": "The number of requests made to EC2 APIs by CNI",
    "awscni_ec2api_error_count": "The number of failed EC2 APIs requests",
    "awscni_force_removed_enis": "The number of ENIs force removed while they had assigned pods",
    "awscni_force_removed_ips": "The number of IPs force removed while they had assigned pods",
    "awscni_assigned_ip_addresses": "The number of IP addresses assigned to pods",
    "awscni_total_ip_addresses": "The total number of IP addresses",
    "awscni_ip_max": "The maximum number of IP addresses that can be allocated to the instance",
    "awscni_eni_allocated": "The number of ENIs allocated",
    "awscni_eni_max": (
        "The maximum number of ENIs that can be attached to the instance, accounting for unmanaged ENIs"
    ),
    "awscni_total_ipv4_prefixes": "The total number of IPv4 prefixes",
    "awscni_assigned_ip_per_cidr": "The total number of IP addresses assigned per cidr",
    "awscni_assigned_ip_per_eni": "The number of allocated ips partitioned by eni",
    "awscni_ipamd_action_inprogress": "The number of ipamd actions in progress",
    LATENCY: "AWS API call latency in ms",
}
APIS = (
    "AssignPrivateIpAddresses",
    "DescribeNetworkInterfaces",
    "GetMetadata",
    "AttachNetworkInterface",
    "CreateNetworkInterface",
    "UnassignPrivateIpAddresses",
)


def go_float(value: float) -> str:
    """Format a float like Go's strconv.FormatFloat(v, 'g', -1, 64), as client_golang does."""
    if value.is_integer() and -1e6 < value < 1e6:
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    _sign, digits, exponent = Decimal(repr(float(value))).normalize().as_tuple()
    assert isinstance(exponent, int)
    sign = "-" if value < 0 else ""
    nd = len(digits)
    exp = exponent + nd - 1
    ds = "".join(map(str, digits))
    if exp < -4 or exp >= 6:
        mant = ds[0] + ("." + ds[1:] if nd > 1 else "")
        return f"{sign}{mant}e{'+' if exp >= 0 else '-'}{abs(exp):02d}"
    return sign + format(abs(Decimal(repr(float(value)))).normalize(), "f")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@functools.lru_cache(maxsize=8192)
def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


def _go_block(rng: random.Random, shape: str) -> str:
    """go_*, process_* and promhttp_* families (constant per node)."""
    lines = [
        "# HELP go_gc_duration_seconds A summary of the pause duration of garbage collection cycles.",
        "# TYPE go_gc_duration_seconds summary",
    ]
    for q, v in (("0", 3.1e-05), ("0.25", 4.9e-05), ("0.5", 6.2e-05), ("0.75", 9.8e-05), ("1", 0.0021)):
        lines.append(f'go_gc_duration_seconds{{quantile="{q}"}} {go_float(v * rng.uniform(0.8, 1.2))}')
    lines += [
        f"go_gc_duration_seconds_sum {go_float(rng.uniform(0.1, 3))}",
        f"go_gc_duration_seconds_count {rng.randint(100, 9000)}",
        "# HELP go_goroutines Number of goroutines that currently exist.",
        "# TYPE go_goroutines gauge",
        f"go_goroutines {rng.randint(30, 90)}",
        "# HELP go_info Information about the Go environment.",
        "# TYPE go_info gauge",
        f'go_info{{version="{"go1.26.4" if shape == "modern" else "go1.12.9"}"}} 1',
    ]
    memstats = (
        "alloc_bytes",
        "alloc_bytes_total",
        "buck_hash_sys_bytes",
        "frees_total",
        "gc_sys_bytes",
        "heap_alloc_bytes",
        "heap_idle_bytes",
        "heap_inuse_bytes",
        "heap_objects",
        "heap_released_bytes",
        "heap_sys_bytes",
        "last_gc_time_seconds",
        "lookups_total",
        "mallocs_total",
        "mcache_inuse_bytes",
        "mcache_sys_bytes",
        "mspan_inuse_bytes",
        "mspan_sys_bytes",
        "next_gc_bytes",
        "other_sys_bytes",
        "stack_inuse_bytes",
        "stack_sys_bytes",
        "sys_bytes",
    )
    for m in memstats:
        kind = "counter" if m.endswith("_total") else "gauge"
        lines += [
            f"# HELP go_memstats_{m} Go runtime memory statistic {m.replace('_', ' ')}.",
            f"# TYPE go_memstats_{m} {kind}",
            f"go_memstats_{m} {go_float(float(rng.randint(10_000, 90_000_000)))}",
        ]
    for name, kind, value in (
        ("process_cpu_seconds_total", "counter", rng.uniform(10, 9000)),
        ("process_max_fds", "gauge", 1048576.0),
        ("process_open_fds", "gauge", float(rng.randint(10, 40))),
        ("process_resident_memory_bytes", "gauge", float(rng.randint(30_000_000, 90_000_000))),
        ("process_start_time_seconds", "gauge", 1.76e9 + rng.randint(0, 9_000_000)),
        ("process_virtual_memory_bytes", "gauge", float(rng.randint(700_000_000, 900_000_000))),
    ):
        lines += [
            f"# HELP {name} Process statistic {name}.",
            f"# TYPE {name} {kind}",
            f"{name} {go_float(value)}",
        ]
    lines += [
        "# HELP promhttp_metric_handler_requests_total Total number of scrapes by HTTP status code.",
        "# TYPE promhttp_metric_handler_requests_total counter",
        'promhttp_metric_handler_requests_total{code="200"} 0',
        'promhttp_metric_handler_requests_total{code="500"} 0',
        'promhttp_metric_handler_requests_total{code="503"} 0',
    ]
    return "\n".join(lines) + "\n"


_HISTOGRAMS_LE = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf")


def _histograms(rng: random.Random) -> str:
    lines = []
    for name, help_, labels, seconds in (
        (
            "awscni_ipamd_startup_duration_seconds",
            "Time taken for ipamd to start",
            'failure_reason="",success="true",with_api_server="true",',
            rng.uniform(1.5, 4.5),
        ),
        (
            "awscni_ipamd_node_initialization_duration_seconds",
            "Time taken to initialize the node",
            'success="true",',
            rng.uniform(0.4, 2.0),
        ),
    ):
        lines += [f"# HELP {name} {help_}", f"# TYPE {name} histogram"]
        for le in _HISTOGRAMS_LE:
            hit = 1 if le == "+Inf" or float(le) >= seconds else 0
            lines.append(f'{name}_bucket{{{labels}le="{le}"}} {hit}')
        lines.append(f"{name}_sum{{{labels[:-1]}}} {go_float(round(seconds, 6))}")
        lines.append(f"{name}_count{{{labels[:-1]}}} 1")
    return "\n".join(lines) + "\n"


STATIC_VARIANTS = 16


@functools.lru_cache(maxsize=2 * STATIC_VARIANTS)
def _static_block(shape: str, variant: int) -> str:
    """go_/process_/promhttp_ (and, modern, histogram) families: a few shared variants, not one per node."""
    rng = random.Random(f"{shape}/{variant}")
    return _go_block(rng, shape) + (_histograms(rng) if shape == "modern" else "")


_OCTETS = [f"{i >> 8}.{i & 255}" for i in range(65536)]


@dataclass
class NodeState:
    """IPAM pool, counters and latency summaries of one aws-node, moved one step per successful scrape."""

    rng: random.Random
    index: int
    subnet: int
    instance_type: str
    prefix_delegation: bool
    shape: str
    assigned: int = 0
    counters: dict[str, dict[Labels, float]] = field(default_factory=dict)
    latency: dict[Labels, list[float]] = field(default_factory=dict)
    increments: dict[str, float] = field(default_factory=dict)
    eni_ids: list[str] = field(default_factory=list)
    inprogress: int = 0
    _static: str = ""

    def __post_init__(self) -> None:
        enis, _ = INSTANCE_TYPES[self.instance_type]
        self.eni_ids = [f"eni-{self.rng.getrandbits(68):017x}" for _ in range(enis)]
        self._static = _static_block(self.shape, self.rng.randrange(STATIC_VARIANTS))
        self.assigned = self.rng.randint(0, max(1, self.ip_max // 2))
        self.restart()

    # -- the pool -------------------------------------------------------------------------------
    @property
    def eni_max(self) -> int:
        """ENIs the instance type can attach."""
        return INSTANCE_TYPES[self.instance_type][0]

    @property
    def ips_per_eni(self) -> int:
        """Secondary IPs (or prefixes) per ENI, the primary excluded."""
        return INSTANCE_TYPES[self.instance_type][1] - 1

    @property
    def ip_max(self) -> int:
        """IPs the instance can hold."""
        return self.eni_max * self.ips_per_eni * (16 if self.prefix_delegation else 1)

    @property
    def prefixes(self) -> int:
        """/28 prefixes held (prefix delegation: assigned plus one warm prefix)."""
        if not self.prefix_delegation:
            return 0
        return min(self.eni_max * self.ips_per_eni, self.assigned // 16 + 1)

    @property
    def eni_allocated(self) -> int:
        """ENIs attached: enough for assigned IPs plus the warm ENI target of one."""
        per = self.ips_per_eni
        used = self.prefixes if self.prefix_delegation else self.assigned
        return min(self.eni_max, used // per + 1)

    @property
    def total(self) -> int:
        """IPs in the pool (warm + assigned)."""
        if self.prefix_delegation:
            return self.prefixes * 16
        return self.eni_allocated * self.ips_per_eni

    # -- movement -------------------------------------------------------------------------------
    def add(self, family: str, labels: Labels, amount: float) -> None:
        """Grow one counter series (creating it, as a *Vec does on first increment)."""
        if self.shape == "old" and family in OLD_ABSENT:
            return
        series = self.counters.setdefault(family, {})
        series[labels] = series.get(labels, 0.0) + amount
        self.increments[family] = self.increments.get(family, 0.0) + amount

    def observe(self, api: str, millis: float, n: int) -> None:
        """Record n AWS API calls into the latency summary."""
        labels: Labels = (("api", api), ("error", "false"))
        if self.shape == "modern":
            labels += (("status", "200"),)
        cell = self.latency.setdefault(labels, [0.0, 0.0])
        cell[0] += millis
        cell[1] += n
        self.increments[LATENCY + "_sum"] = self.increments.get(LATENCY + "_sum", 0.0) + millis
        self.increments[LATENCY + "_count"] = self.increments.get(LATENCY + "_count", 0.0) + n

    def step(self) -> None:
        """Time passes on the node: workload pods come and go, ENIs attach, counters grow."""
        rng = self.rng
        eni_before = self.eni_allocated
        delta = rng.randint(-3, 4)
        wanted = max(0, self.assigned + delta)
        if wanted > self.ip_max:
            self.add("awscni_no_available_ip_addresses", (), float(wanted - self.ip_max))
            wanted = self.ip_max
        churn = rng.randint(0, 2)
        adds = max(0, wanted - self.assigned) + churn
        dels = max(0, self.assigned - wanted) + churn
        self.assigned = wanted
        self.add("awscni_add_ip_req_count", (), float(adds))
        if dels:
            self.add("awscni_del_ip_req_count", (("reason", "PodDeleted"),), float(dels))
        self.add("awscni_reconcile_count", (("fn", "eniDataStoreReconcile"),), 1.0)
        self.inprogress = 1 if rng.random() < 0.1 else 0
        attached = self.eni_allocated - eni_before
        if attached > 0:
            for api in ("CreateNetworkInterface", "AttachNetworkInterface"):
                self.add("awscni_ec2api_req_count", (("fn", api),), float(attached))
                self.observe(api, float(attached * rng.randint(300, 900)), attached)
        calls = rng.randint(2, 20)
        self.observe("GetMetadata", float(calls * rng.randint(0, 2)), calls)
        self.add("awscni_ec2api_req_count", (("fn", "DescribeNetworkInterfaces"),), 1.0)
        self.observe("DescribeNetworkInterfaces", float(rng.randint(60, 200)), 1)
        if rng.random() < 0.15:
            self.add(
                "awscni_aws_api_error_count",
                (("api", "DescribeNetworkInterfaces"), ("error", "RequestLimitExceeded")),
                1.0,
            )
            self.add("awscni_ec2api_error_count", (("fn", "DescribeNetworkInterfaces"),), 1.0)
        if rng.random() < 0.05:
            self.add("awscni_ipamd_error_count", (("fn", "increaseIPPoolAllocIPAddressesFailed"),), 1.0)
            eni = self.eni_ids[rng.randrange(len(self.eni_ids))]
            self.add(
                "awscni_aws_utils_error_count",
                (
                    ("fn", "AllocIPAddresses"),
                    (
                        "error",
                        f'InvalidParameterValue: Value ({eni}) for parameter "networkInterface" is invalid',
                    ),
                ),
                1.0,
            )
        if rng.random() < 0.02:
            self.add("awscni_pod_eni_error_count", (("fn", "ensurePodENI"),), 1.0)
        if rng.random() < 0.01:
            self.add("awscni_force_removed_ips", (), 1.0)

    def age(self, steps: int) -> None:
        """Give a node some history: one step, scaled (counted as increments)."""
        self.step()
        for series in self.counters.values():
            for labels in series:
                series[labels] *= steps
        for cell in self.latency.values():
            cell[0] *= steps
            cell[1] *= steps
        for fam in self.increments:
            self.increments[fam] *= steps

    def restart(self) -> None:
        """aws-node restarts: counters and summaries start again from 0, *Vec series vanish."""
        self.counters = {
            fam: {(): 0.0} for fam in UNLABELLED_COUNTERS if self.shape == "modern" or fam not in OLD_ABSENT
        }
        self.latency = {}

    # -- rendering ------------------------------------------------------------------------------
    def _cidr_block(self) -> tuple[str, float]:
        """awscni_assigned_ip_per_cidr lines: one per /32 of the pool, or per /28 prefix."""
        fam = "awscni_assigned_ip_per_cidr"
        base = (self.subnet << 16) | (self.index << 8)
        if self.prefix_delegation:
            lines = []
            left = self.assigned
            for p in range(self.prefixes):
                n = min(16, left)
                left -= n
                a = (base << 4) + p * 16
                lines.append(f'{fam}{{cidr="10.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}/28"}} {n}\n')
            return "".join(lines), float(self.assigned)
        first = f'{fam}{{cidr="10.{(base >> 16) & 255}.'
        start = (base + 1) & 0xFFFF
        assigned = min(self.assigned, self.total)
        one = [f'{first}{_OCTETS[(start + i) & 0xFFFF]}/32"}} 1\n' for i in range(assigned)]
        zero = [f'{first}{_OCTETS[(start + i) & 0xFFFF]}/32"}} 0\n' for i in range(assigned, self.total)]
        body = "".join(one) + "".join(zero)
        return body, float(assigned)

    def render(self) -> tuple[bytes, dict[str, Any]]:
        """The payload and what it contains (gauge/counter sums, latency sum/count, max p99)."""
        modern = self.shape == "modern"
        per_eni: list[tuple[Labels, float]] = []
        left = self.assigned
        cap = self.ips_per_eni * (16 if self.prefix_delegation else 1)
        for eni in self.eni_ids[: self.eni_allocated]:
            n = min(cap, left)
            left -= n
            per_eni.append(((("eni", eni),), float(n)))
        gauges: dict[str, list[tuple[Labels, float]]] = {
            "awscni_assigned_ip_addresses": [((), float(self.assigned))],
            "awscni_total_ip_addresses": [((), float(self.total))],
            "awscni_ip_max": [((), float(self.ip_max))],
            "awscni_eni_allocated": [((), float(self.eni_allocated))],
            "awscni_eni_max": [((), float(self.eni_max))],
            "awscni_total_ipv4_prefixes": [((), float(self.prefixes))],
            "awscni_assigned_ip_per_eni": per_eni,
            "awscni_ipamd_action_inprogress": [
                ((("fn", fn),), float(self.inprogress if fn == "increaseIPPool" else 0))
                for fn in ("decreaseIPPool", "increaseIPPool", "nodeIPPoolReconcile")
            ],
        }
        if not modern and not self.prefix_delegation:
            del gauges["awscni_total_ipv4_prefixes"]
        blocks: dict[str, str] = {}
        gauge_sums = {f: sum(v for _, v in samples) for f, samples in gauges.items()}
        cidr = "awscni_assigned_ip_per_cidr"
        cidr_body, gauge_sums[cidr] = self._cidr_block()
        blocks[cidr] = f"# HELP {cidr} {HELP[cidr]}\n# TYPE {cidr} gauge\n{cidr_body}"
        for fam, samples in gauges.items():
            body = "".join(f"{fam}{_labels(lb)} {go_float(v)}\n" for lb, v in samples)
            blocks[fam] = f"# HELP {fam} {HELP[fam]}\n# TYPE {fam} gauge\n{body}"
        for fam, series in self.counters.items():
            if not series:
                continue
            typ = "gauge" if not modern and fam in OLD_GAUGE_TYPED else "counter"
            body = "".join(f"{fam}{_labels(lb)} {go_float(v)}\n" for lb, v in sorted(series.items()))
            blocks[fam] = f"# HELP {fam} {HELP[fam]}\n# TYPE {fam} {typ}\n{body}"
        p99: float | None = None
        if self.latency:
            lines = [f"# HELP {LATENCY} {HELP[LATENCY]}", f"# TYPE {LATENCY} summary"]
            for lb, (total, count) in sorted(self.latency.items()):
                if not modern:
                    for q in ("0.5", "0.9", "0.99"):
                        value = (
                            float(round(total / count)) if count and lb[0][1] == "GetMetadata" else math.nan
                        )
                        if q == "0.99" and not math.isnan(value):
                            p99 = value if p99 is None else max(p99, value)
                        lines.append(f"{LATENCY}{_labels((*lb, ('quantile', q)))} {go_float(value)}")
                lines.append(f"{LATENCY}_sum{_labels(lb)} {go_float(total)}")
                lines.append(f"{LATENCY}_count{_labels(lb)} {go_float(count)}")
            blocks[LATENCY] = "\n".join(lines) + "\n"
        if modern:
            blocks["awscni_build_info"] = (
                "# HELP awscni_build_info A metric with a constant '1' value labeled by version, revision, "
                "and goversion from which amazon-vpc-cni-k8s was built.\n# TYPE awscni_build_info gauge\n"
                'awscni_build_info{goversion="go1.26.4",version="v1.23.1"} 1\n'
            )
        text = "".join(blocks[k] for k in sorted(blocks)) + self._static
        served = {
            "gauges": gauge_sums,
            "counters": {f: sum(s.values()) for f, s in self.counters.items() if s},
            "latency_sum": sum(c[0] for c in self.latency.values()),
            "latency_count": sum(c[1] for c in self.latency.values()),
            "p99_max": p99,
        }
        return text.encode(), served
