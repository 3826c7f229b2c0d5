"""Ragged batching with TorchScript models built here: ragged inputs reach the model as one
1-D tensor, the config's batch inputs beside them, and each request's outputs come back split
by batch size or, for batch outputs, by its input's shape. Run through an instance (the batch
order is known) and served over HTTP and gRPC with the dynamic batcher; bad models and bad
requests get clear errors while the server keeps serving."""

from __future__ import annotations

import queue

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from torch_backend_helpers import instance, load, request, run, save_exported, save_script
from tritonclient.utils import InferenceServerException

from triton_backend_torch import plugin
from triton_core.errors import TritonError
from triton_core.frontends.grpc import GrpcFrontEnd
from triton_core.testing import LoopThread, make_server, serving_http

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class SegmentSum(torch.nn.Module):
    """Each request's sum, from the flat values and the offsets Triton adds ([0, ...ends])."""

    def forward(self, VALUES: torch.Tensor, OFFSETS: torch.Tensor) -> torch.Tensor:  # noqa: N803
        ends = torch.cat([torch.zeros(1, dtype=VALUES.dtype), torch.cumsum(VALUES, 0)])
        idx = OFFSETS.long()
        return (ends[idx[1:]] - ends[idx[:-1]]).unsqueeze(1)


SEGMENT_SUM = """
max_batch_size: 8
input [{ name: "VALUES" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true }]
output [{ name: "SUM" data_type: TYPE_FP32 dims: [ 1 ] }]
batch_input [{ kind: BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO target_name: "OFFSETS"
               data_type: TYPE_INT32 source_input: "VALUES" }]
dynamic_batching { preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 30000000 }
"""


class Doubled(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


DOUBLED = """
max_batch_size: 8
input [{ name: "x" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true }]
output [{ name: "y" data_type: TYPE_FP32 dims: [ -1 ] }]
batch_output [{ kind: BATCH_SCATTER_WITH_INPUT_SHAPE target_name: "y" source_input: "x" }]
dynamic_batching { preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 30000000 }
"""


class BatchView(torch.nn.Module):
    """Returns what the batch inputs held: the whole batch's vectors repeated per request,
    and the item shapes (one row per batch item, split back by batch size)."""

    def forward(self, RAGGED: torch.Tensor, COUNT: torch.Tensor, ACC: torch.Tensor,  # noqa: N803
                ACC0: torch.Tensor, MAXS: torch.Tensor, FLAT: torch.Tensor,  # noqa: N803
                ITEMS: torch.Tensor):  # noqa: N803
        n = int(ITEMS.shape[0])
        return {"COUNT_OUT": COUNT.view(1, -1).expand(n, -1),
                "ACC_OUT": ACC.view(1, -1).expand(n, -1),
                "ACC0_OUT": ACC0.view(1, -1).expand(n, -1),
                "MAX_OUT": torch.full([n, 1], MAXS.shape[0], dtype=torch.int32),
                "FLAT_OUT": FLAT.view(1, -1).expand(n, -1),
                "ITEMS_OUT": ITEMS,
                "TOTAL": torch.full([n, 1], RAGGED.shape[0], dtype=torch.int32)}


def _batch_input(kind: str, target: str) -> str:
    return f'{{ kind: {kind} target_name: "{target}" data_type: TYPE_INT32 source_input: "RAGGED" }}'


BATCH_VIEW = f"""
max_batch_size: 8
input [{{ name: "RAGGED" data_type: TYPE_FP32 dims: [ -1, -1 ] allow_ragged_batch: true }}]
output [{{ name: "COUNT_OUT" data_type: TYPE_INT32 dims: [ -1 ] }},
        {{ name: "ACC_OUT" data_type: TYPE_INT32 dims: [ -1 ] }},
        {{ name: "ACC0_OUT" data_type: TYPE_INT32 dims: [ -1 ] }},
        {{ name: "MAX_OUT" data_type: TYPE_INT32 dims: [ 1 ] }},
        {{ name: "FLAT_OUT" data_type: TYPE_INT32 dims: [ -1 ] }},
        {{ name: "ITEMS_OUT" data_type: TYPE_INT32 dims: [ 2 ] }},
        {{ name: "TOTAL" data_type: TYPE_INT32 dims: [ 1 ] }}]
batch_input [{_batch_input("BATCH_ELEMENT_COUNT", "COUNT")},
             {_batch_input("BATCH_ACCUMULATED_ELEMENT_COUNT", "ACC")},
             {_batch_input("BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO", "ACC0")},
             {_batch_input("BATCH_MAX_ELEMENT_COUNT_AS_SHAPE", "MAXS")},
             {_batch_input("BATCH_ITEM_SHAPE_FLATTEN", "FLAT")},
             {_batch_input("BATCH_ITEM_SHAPE", "ITEMS")}]
dynamic_batching {{ preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 30000000 }}
"""


def _values(n: int, start: float = 1.0) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.float32).reshape(1, n)


# ---------------------------------------------------------------- through an instance
def test_segment_sum_in_one_batch(repo):
    inst = instance(load(save_script(repo, "segsum", SegmentSum(), SEGMENT_SUM)))
    arrays = [_values(2), _values(4, 10), _values(0), _values(1, 7)]
    responses, _ = run(inst, *[request("segsum", VALUES=a) for a in arrays])
    assert [r.error for r in responses] == [None] * 4
    assert [r.outputs[0].as_numpy().tolist() for r in responses] == [[[3]], [[46]], [[0]], [[7]]]


def test_every_batch_input_kind_in_one_batch(repo):
    inst = instance(load(save_script(repo, "view", BatchView(), BATCH_VIEW)))
    shapes = [(2, 1, 2), (1, 1, 2), (1, 2, 2)]  # model_config.proto's BATCH_ITEM_SHAPE shapes
    responses, _ = run(inst, *[request("view", RAGGED=np.zeros(s, np.float32)) for s in shapes])
    outs = [{t.name: t.as_numpy() for t in r.outputs} for r in responses]
    assert [o["ITEMS_OUT"].tolist() for o in outs] == [[[1, 2], [1, 2]], [[1, 2]], [[2, 2]]]
    first = outs[0]
    assert first["COUNT_OUT"].tolist() == [[4, 2, 4]] * 2
    assert first["ACC_OUT"].tolist() == [[4, 6, 10]] * 2
    assert first["ACC0_OUT"].tolist() == [[0, 4, 6, 10]] * 2
    assert first["MAX_OUT"].tolist() == [[4]] * 2
    assert first["FLAT_OUT"].tolist() == [[1, 2, 1, 2, 1, 2, 2, 2]] * 2
    assert first["TOTAL"].tolist() == [[10]] * 2  # the ragged input, flattened: 4 + 2 + 4
    assert outs[2]["COUNT_OUT"].tolist() == [[4, 2, 4]]


def test_batch_output_is_split_by_the_input_shape(repo):
    inst = instance(load(save_script(repo, "doubled", Doubled(), DOUBLED)))
    arrays = [_values(3), np.ones((2, 2), np.float32), _values(1, 5)]
    responses, _ = run(inst, *[request("doubled", x=a) for a in arrays])
    got = [r.outputs[0].as_numpy() for r in responses]
    for g, a in zip(got, arrays, strict=True):
        np.testing.assert_array_equal(g, a * 2)


class WrongLength(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[1:]


def test_a_batch_output_of_the_wrong_size_is_an_error_for_each_request(repo):
    inst = instance(load(save_script(repo, "short", WrongLength(), DOUBLED)))
    responses, _ = run(inst, request("short", x=_values(3)), request("short", x=_values(2)))
    for r in responses:
        assert r.error is not None and "elements" in r.error.message


def _exported_segment_sum(repo, values_len: int = 5):
    n = torch.export.Dim("n", min=2)
    r = torch.export.Dim("r", min=3)  # export specializes a lone request's sum (length 1)
    args = (torch.ones(values_len), torch.tensor([0, 2, values_len], dtype=torch.int32))
    return save_exported(repo, "segsum_ep", SegmentSum(), args,
                         dynamic_shapes={"VALUES": {0: n}, "OFFSETS": {0: r}}, pbtxt=SEGMENT_SUM)


def test_an_exported_program_takes_ragged_and_batch_inputs(repo):
    inst = instance(load(_exported_segment_sum(repo)))
    arrays = [_values(2), _values(4, 10), _values(1, 7)]
    responses, _ = run(inst, *[request("segsum_ep", VALUES=a) for a in arrays])
    assert [r.outputs[0].as_numpy().tolist() for r in responses] == [[[3]], [[46]], [[7]]]


def test_an_exported_program_with_a_fixed_ragged_input_fails_its_load(repo):
    args = (torch.ones(5), torch.tensor([0, 2, 5], dtype=torch.int32))
    folder = save_exported(repo, "fixed_ep", SegmentSum(), args, pbtxt=SEGMENT_SUM)
    with pytest.raises(TritonError) as e:
        load(folder)
    assert "must take it with shape [-1]" in e.value.message and "'VALUES'" in e.value.message


# ---------------------------------------------------------------- served
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    save_script(repo, "segsum", SegmentSum(), SEGMENT_SUM)
    save_script(repo, "doubled", Doubled(), DOUBLED)
    save_script(repo, "view", BatchView(), BATCH_VIEW)
    save_script(repo, "bad_source", Doubled(), DOUBLED.replace('source_input: "x"', 'source_input: "nope"'))
    server = make_server(repo, plugin, model_control_mode="explicit",
                         load_model=["segsum", "doubled", "view"])
    server.start()
    loop = LoopThread()
    front = GrpcFrontEnd(server, "127.0.0.1", 0)
    loop.run(front.start())
    grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{front.port}")
    try:
        with serving_http(server) as url:
            yield httpclient.InferenceServerClient(url, concurrency=4), grpc
    finally:
        grpc.close()
        loop.run(front.stop(0))
        loop.close()
        server.stop()


def _input(mod, name: str, arr: np.ndarray, datatype: str = "FP32"):
    i = mod.InferInput(name, list(arr.shape), datatype)
    i.set_data_from_numpy(arr)
    return i


def _together(client, protocol: str, model: str, inputs: list[list]) -> list:
    """Send every request at once (the batcher's preferred size is their count)."""
    if protocol == "http":
        pending = [client.async_infer(model, i) for i in inputs]
        return [p.get_result() for p in pending]
    answers: queue.Queue = queue.Queue()
    for k, i in enumerate(inputs):
        client.async_infer(model, i, lambda result, error, k=k: answers.put((k, result, error)))
    results: list = [None] * len(inputs)
    for _ in inputs:
        k, result, error = answers.get(timeout=60)
        if error is not None:
            raise error
        results[k] = result
    return results


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_served_segment_sums_batched_together(served, protocol):
    client = served[0] if protocol == "http" else served[1]
    mod = httpclient if protocol == "http" else grpcclient
    before = client.get_inference_statistics("segsum")
    arrays = [_values(2), _values(4, 10), _values(5, -3), _values(1, 7)]
    results = _together(client, protocol, "segsum", [[_input(mod, "VALUES", a)] for a in arrays])
    assert [float(r.as_numpy("SUM")[0, 0]) for r in results] == [float(a.sum()) for a in arrays]
    after = client.get_inference_statistics("segsum")
    stats = [s["model_stats"][0] if protocol == "http" else s.model_stats[0] for s in (before, after)]
    executions = [s["execution_count"] if protocol == "http" else s.execution_count for s in stats]
    assert executions[1] - executions[0] == 1  # the four ragged requests ran as one batch


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_served_batch_inputs(served, protocol):
    client = served[0] if protocol == "http" else served[1]
    mod = httpclient if protocol == "http" else grpcclient
    shapes = [(1, 4, 1), (1, 1, 2), (2, 2, 2)]  # 4 batch items: the preferred batch size
    results = _together(client, protocol, "view",
                        [[_input(mod, "RAGGED", np.zeros(s, np.float32))] for s in shapes])
    for r, s in zip(results, shapes, strict=True):
        counts = r.as_numpy("COUNT_OUT")
        assert counts.shape == (s[0], 3) and sorted(counts[0].tolist()) == [2, 4, 8]
        assert r.as_numpy("ACC_OUT")[0].tolist() == np.cumsum(counts[0]).tolist()
        assert r.as_numpy("ACC0_OUT")[0].tolist() == [0, *np.cumsum(counts[0]).tolist()]
        assert r.as_numpy("MAX_OUT").tolist() == [[8]] * s[0]
        assert r.as_numpy("TOTAL").tolist() == [[14]] * s[0]
        assert r.as_numpy("ITEMS_OUT").tolist() == [list(s[1:])] * s[0]  # this request's own rows
        assert sorted(r.as_numpy("FLAT_OUT")[0].tolist()) == sorted([4, 1, 1, 2, 2, 2, 2, 2])


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_served_batch_output_each_request_its_own_shape(served, protocol):
    client = served[0] if protocol == "http" else served[1]
    mod = httpclient if protocol == "http" else grpcclient
    arrays = [_values(3), np.ones((2, 2), np.float32), _values(1, 5)]
    results = _together(client, protocol, "doubled", [[_input(mod, "x", a)] for a in arrays])
    for r, a in zip(results, arrays, strict=True):
        np.testing.assert_array_equal(r.as_numpy("y"), a * 2)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_client_cannot_send_a_batch_input(served, protocol):
    client = served[0] if protocol == "http" else served[1]
    mod = httpclient if protocol == "http" else grpcclient
    with pytest.raises(InferenceServerException) as e:
        client.infer("segsum", [_input(mod, "VALUES", _values(2)),
                                _input(mod, "OFFSETS", np.zeros((1, 2), np.int32), "INT32")])
    assert "unexpected inference input 'OFFSETS'" in e.value.message()
    with pytest.raises(InferenceServerException) as e:  # a ragged input still needs its batch dim
        client.infer("segsum", [_input(mod, "VALUES", np.ones(3, np.float32))])
    assert "VALUES" in e.value.message()
    assert client.is_model_ready("segsum")


def test_a_bad_batch_output_fails_its_load_and_the_others_serve(served):
    http, grpc = served
    with pytest.raises(InferenceServerException) as e:
        http.load_model("bad_source")
    assert "unknown source input name 'nope'" in e.value.message()
    assert not http.is_model_ready("bad_source")
    x = np.ones((4, 2), np.float32)  # four batch items: the preferred batch size, no wait
    r = grpc.infer("doubled", [_input(grpcclient, "x", x)])
    np.testing.assert_array_equal(r.as_numpy("y"), x * 2)
