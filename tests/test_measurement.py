import math

from searcher.measure.harness import classify_error
from searcher.measure.measurement import FIDELITIES, Measurement, Status, summarize_samples


def test_summaries():
    median, mean, iqr = summarize_samples([10.0, 11.0, 12.0, 13.0, 100.0])
    assert median == 12.0
    assert mean == 29.2
    assert iqr == 2.0  # inclusive quartiles 11 and 13: the outlier does not move it


def test_round_trip_keeps_failures_as_data():
    m = Measurement.failed(Status.OUT_OF_RESOURCES, "shared memory", "short", cost_s=1.5,
                           device={"name": "X"})
    d = m.to_dict()
    assert d["status"] == "out_of_resources" and d["median_us"] is None
    back = Measurement.from_dict(d)
    assert back == m and not back.ok and math.isinf(back.median_us)


def test_fidelities_match_vllm_tuning_for_full():
    full = FIDELITIES["full"]
    assert (full.calls_per_graph, full.warmup, full.replays) == (10, 5, 20)
    assert FIDELITIES["short"].replays < full.replays < FIDELITIES["long"].replays


def test_errors_are_classified_by_kind():
    class OutOfResources(Exception):
        pass

    class CompilationError(Exception):
        pass

    assert classify_error(OutOfResources("out of resource: shared memory, Required: 300000"))[0] \
        is Status.OUT_OF_RESOURCES
    assert classify_error(CompilationError("at 3:4: bad"))[0] is Status.COMPILE_ERROR
    status, reason = classify_error(RuntimeError("CUDA error: an illegal memory access"))
    assert status is Status.RUNTIME_ERROR and "illegal memory access" in reason
