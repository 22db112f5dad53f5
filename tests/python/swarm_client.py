"""Drives swarmd from Python, through stubs built from proto/ with
grpcio-tools: register -> ingest -> round -> watch decisions, the error
contract, and metrics sent by the OpenTelemetry SDK's own OTLP exporter.

Usage: swarm_client.py HOST:PORT PROTO_DIR
Prints one JSON object of what it saw; exits non-zero on any failure.
"""

import json
import math
import pathlib
import sys
import tempfile
import time

import grpc
from grpc_tools import protoc


def build_stubs(proto_dir: pathlib.Path, out: pathlib.Path) -> None:
    files = sorted(str(p.relative_to(proto_dir)) for p in (proto_dir / "swarm" / "v1").glob("*.proto"))
    rc = protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}", *files])
    if rc != 0:
        raise SystemExit(f"protoc failed ({rc}) on {files}")
    sys.path.insert(0, str(out))


def main() -> None:
    addr, proto_dir = sys.argv[1], pathlib.Path(sys.argv[2])
    stubs = pathlib.Path(tempfile.mkdtemp(prefix="swarm-stubs-"))
    build_stubs(proto_dir, stubs)
    from swarm.v1 import metrics_pb2 as m
    from swarm.v1 import metrics_pb2_grpc as m_grpc
    from swarm.v1 import placement_pb2 as p
    from swarm.v1 import placement_pb2_grpc as p_grpc
    from swarm.v1 import topology_pb2 as t
    from swarm.v1 import topology_pb2_grpc as t_grpc

    seen = {}
    channel = grpc.insecure_channel(addr)
    grpc.channel_ready_future(channel).result(timeout=20)
    topo = t_grpc.TopologyStub(channel)
    metrics = m_grpc.MetricsStub(channel)
    placement = p_grpc.PlacementStub(channel)

    # Register: two 16-core nodes; three 5-core virtual nodes, all on p0.
    gib = 1 << 30
    topo.UpsertPhysicalNodes(t.UpsertPhysicalNodesRequest(nodes=[
        t.PhysicalNode(id=n, capacity=t.Resources(cpu_cores=16, memory_bytes=64 * gib)) for n in ("p0", "p1")
    ]))
    created = topo.UpsertVirtualNodes(t.UpsertVirtualNodesRequest(nodes=[
        t.VirtualNode(id=v, requested=t.Resources(cpu_cores=5, memory_bytes=4 * gib)) for v in ("a", "b", "c")
    ])).created
    seen["virtual_nodes_created"] = created
    topo.SetPlacements(t.SetPlacementsRequest(placements=[
        t.PlacementAssignment(virtual_node_id=v, physical_node_id="p0") for v in ("a", "b", "c")
    ]))

    # Ingest (client streaming): p0 at 15 of 16 cores, one NaN that must be refused.
    now = int(time.time() * 1000)
    virtual = m.ENTITY_KIND_VIRTUAL
    physical = m.ENTITY_KIND_PHYSICAL

    def batches():
        yield m.IngestBatch(samples=[
            m.Sample(entity_kind=virtual, entity_id=v, metric=m.METRIC_CPU_USAGE, timestamp_ms=now, value=5.0)
            for v in ("a", "b", "c")
        ])
        yield m.IngestBatch(samples=[
            m.Sample(entity_kind=physical, entity_id="p0", metric=m.METRIC_CPU_USAGE, timestamp_ms=now, value=15.0),
            m.Sample(entity_kind=virtual, entity_id="a", metric=m.METRIC_CPU_USAGE, timestamp_ms=now, value=math.nan),
        ])

    r = metrics.Ingest(batches())
    seen["ingest"] = {
        "accepted": r.accepted,
        "rejected": r.rejected,
        "rejection": f"{r.rejections[0].field}: {r.rejections[0].reason}" if r.rejections else None,
    }

    # A round: p0 is over the overload threshold, so something moves to p1.
    rr = placement.RunRound(p.RunRoundRequest())
    seen["round"] = [
        {"sequence": d.sequence, "vnode": d.virtual_node_id, "from": d.from_node_id, "to": d.to_node_id,
         "kind": p.DecisionKind.Name(d.kind), "reason": d.reason}
        for d in rr.decisions
    ]

    # Watch from the start: the stream replays what the round decided.
    stream = placement.WatchDecisions(p.WatchDecisionsRequest(from_sequence=1), timeout=10)
    watched = []
    for d in stream:
        watched.append(d.sequence)
        if len(watched) == len(rr.decisions):
            stream.cancel()
            break
    seen["watched"] = watched

    # The error contract: an unknown id is NOT_FOUND, with what was wrong.
    try:
        placement.GetAffinity(p.GetAffinityRequest(virtual_node_ids=["ghost"]))
        seen["unknown_id"] = None
    except grpc.RpcError as e:
        seen["unknown_id"] = {"code": e.code().name, "details": e.details()}

    # OTLP through the OpenTelemetry SDK's own exporter, to the same port.
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    exporter = OTLPMetricExporter(endpoint=addr, insecure=True)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        resource=Resource.create({"swarm.node.id": "b", "swarm.node.kind": "virtual"}),
        metric_readers=[reader],
    )
    meter = provider.get_meter("swarm-python-client-test")
    gauge = meter.create_gauge("swarm.memory", unit="By")
    gauge.set(3 * gib)
    seen["otlp_flushed"] = provider.force_flush(timeout_millis=10_000)
    provider.shutdown()
    points = metrics.QuerySeries(m.QuerySeriesRequest(
        entity_kind=virtual, entity_id="b", metric=m.METRIC_MEMORY_BYTES, from_ms=now - 60_000)).points
    seen["otlp_points"] = [pt.value for pt in points]

    print(json.dumps(seen))


if __name__ == "__main__":
    main()
