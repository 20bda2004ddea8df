"""Sharding by path, from shapes alone on abstract meshes (no devices needed): which spec each
tensor gets from the rules, the family's tensor-parallel rules and auto FSDP; the optimizer state
following its parameters; one line for a rule that cannot work; the mesh's sizes; remat's
memory. Training on 8 simulated devices is in tests/e2e/test_sharded_devices.py."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import AbstractMesh, PartitionSpec

from zoo.errors import ZooError
from zoo.memory import nbytes
from zoo.models.registry import create_model
from zoo.training import parallel, sharding
from zoo.training.build import _state_maker

# make test runs these; make test-fast (the edit loop) leaves them out: each compiles, trains or
# loads a checkpoint for seconds
pytestmark = pytest.mark.slow

SETTINGS = {"vocab_size": 16, "d_model": 32, "num_heads": 4, "num_layers": 2, "max_len": 8}


def mesh(data: int = 1, fsdp: int = 1, tensor: int = 1) -> AbstractMesh:
    return AbstractMesh((data, fsdp, tensor), ("data", "fsdp", "tensor"))


@pytest.fixture(scope="module")
def transformer() -> nnx.Module:
    return nnx.eval_shape(lambda: create_model("transformer", rngs=nnx.Rngs(0), **SETTINGS))


def test_auto_fsdp_splits_the_largest_dividing_dimension_never_the_layer_axis(transformer):
    placed = sharding.place(transformer, mesh(fsdp=4), auto_fsdp=True)
    specs = placed.specs
    # (2 layers, 32, 128): the feed-forward's widest dimension; the layer axis is never split
    assert specs["blocks/mlp/layers/0/kernel"] == PartitionSpec(None, None, "fsdp")
    assert specs["blocks/mlp/head/kernel"] == PartitionSpec(None, "fsdp", None)
    assert specs["embed/embedding"] == PartitionSpec(None, "fsdp")  # (16, 32): 32 is larger
    assert specs["blocks/attn/query/kernel"] == PartitionSpec(None, "fsdp", None)  # first of equal
    assert specs["norm/scale"] == PartitionSpec(None)  # one dimension: replicated
    # what stays whole: the final norm's scale and bias (32,) and the head's bias (16,); the
    # blocks' biases and norms (2 layers, 32) split their second dimension
    assert specs["blocks/attn_norm/scale"] == PartitionSpec(None, "fsdp")
    assert placed.replicated_bytes() == 4 * (32 + 32 + 16)
    assert placed.sources["blocks/mlp/head/kernel"] == "auto_fsdp"


def test_first_matching_rule_wins_then_family_rules_then_fsdp(transformer):
    rules = [["blocks/attn/query/kernel", [None, "tensor", None]], ["blocks/attn/*", None]]
    rules[1][1] = [None, None, None]  # a replicate-everything rule after the first
    family = sharding.family_rules("transformer", SETTINGS)
    placed = sharding.place(transformer, mesh(fsdp=2, tensor=2), rules[:1], family, True)
    specs = placed.specs
    assert specs["blocks/attn/query/kernel"] == PartitionSpec(None, "tensor", None)  # the user's
    # the family's column rule, and fsdp on the largest dimension left free
    assert specs["blocks/attn/key/kernel"] == PartitionSpec(None, "fsdp", "tensor")
    assert specs["blocks/attn/out/kernel"] == PartitionSpec(None, "tensor", "fsdp")
    assert specs["blocks/mlp/layers/0/bias"] == PartitionSpec(None, "tensor")
    assert specs["blocks/mlp/head/kernel"] == PartitionSpec(None, "tensor", "fsdp")
    assert placed.sources["blocks/attn/key/kernel"] == (
        "'blocks/attn/key/kernel' of the family's rules + auto_fsdp"
    )
    assert placed.as_json()["params"]["blocks/attn/key/kernel"] == {
        "shape": [2, 32, 32],
        "spec": [None, "fsdp", "tensor"],
        "rule": "'blocks/attn/key/kernel' of the family's rules + auto_fsdp",
    }


def test_mlp_rules_pair_column_and_row_layers():
    rules = dict(sharding.family_rules("mlp", {"in_features": 4, "widths": [8, 8, 8]}))
    assert rules == {
        "layers/0/kernel": [None, "tensor"],
        "layers/0/bias": ["tensor"],
        "layers/1/kernel": ["tensor", None],
        "layers/2/kernel": [None, "tensor"],
        "layers/2/bias": ["tensor"],
        "head/kernel": ["tensor", None],
    }


@pytest.mark.parametrize(
    "rule, message",
    [
        (
            ["embed/embedding", [None, "fsdp"]],
            "parallel.rules[0] 'embed/embedding' on embed/embedding (shape [16, 32]): dimension 1 "
            "of size 32 does not divide over fsdp=3 devices; change the rule or parallel.mesh",
        ),
        (
            ["head/kernel", ["fsdp"]],
            "parallel.rules[0] 'head/kernel' on head/kernel (shape [32, 16]): the spec ['fsdp'] "
            "has length 1, but the tensor has 2 dimensions (the layer axis of stacked blocks "
            "included)",
        ),
        (
            ["head/kernel", ["model", None]],
            "parallel.rules[0] 'head/kernel' on head/kernel (shape [32, 16]): unknown mesh axis "
            "'model'; the mesh has data, fsdp, tensor",
        ),
        (
            ["head/kernel", [["data", "fsdp"], "fsdp"]],
            "mesh axis 'fsdp' is used twice in one spec",
        ),
        (["hed/kernel", [None, None]], "parallel.rules pattern 'hed/kernel' matches no path"),
    ],
)
def test_a_rule_that_cannot_work_is_one_line_naming_rule_and_path(transformer, rule, message):
    with pytest.raises(ZooError) as err:
        sharding.place(transformer, mesh(fsdp=3), [rule])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_optimizer_state_and_ema_follow_their_parameters(transformer):
    placed = sharding.place(transformer, mesh(fsdp=4), auto_fsdp=True)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3))
    _, params, rest = nnx.split(transformer, nnx.Param, ...)
    abstract = jax.eval_shape(_state_maker(tx, 0, True), params, rest)
    layout = sharding.state_shardings(placed, abstract, mesh(fsdp=4))
    mu = layout.opt_state[1][0].mu["blocks"]["mlp"]["head"]["kernel"]
    assert mu.spec == PartitionSpec(None, "fsdp", None)
    assert layout.ema["blocks"]["mlp"]["head"]["kernel"].spec == mu.spec
    assert layout.opt_state[1][0].count.spec == PartitionSpec()  # a scalar: replicated
    whole = nbytes(abstract.params)
    split = sharding.per_device_bytes(abstract.params, layout.params)
    # a quarter of everything but what stays replicated
    assert split == (whole - placed.replicated_bytes()) // 4 + placed.replicated_bytes()


def test_mesh_sizes_fill_one_axis_and_refuse_a_wrong_product():
    assert parallel.mesh_sizes({"data": 2, "fsdp": -1}, 8) == {"data": 2, "fsdp": 4, "tensor": 1}
    assert parallel.mesh_sizes({"expert": 2}, 2) == {"data": 1, "fsdp": 1, "tensor": 1, "expert": 2}
    with pytest.raises(
        ZooError,
        match=r"^parallel.mesh=\{data: 3, fsdp: -1, tensor: 1\} does not "
        r"fit the run's 8 device\(s\) in 2 processes: the sizes must multiply to 8 ",
    ):
        parallel.mesh_sizes({"data": 3, "fsdp": -1}, 8, processes=2)


def test_remat_keeps_the_loss_and_lowers_the_compiled_peak():
    tokens = np.random.default_rng(1).integers(0, 16, (4, 16))
    tiny = {"vocab_size": 16, "d_model": 16, "num_heads": 2, "num_layers": 2, "max_len": 16}

    def compiled(remat: str) -> tuple[float, int]:
        model = nnx.eval_shape(
            lambda: create_model("transformer", rngs=nnx.Rngs(0), **tiny, remat=remat)
        )
        graphdef, abstract, rest = nnx.split(model, nnx.Param, ...)
        rng = np.random.default_rng(0)  # host arrays: no program to initialise the model
        params = jax.tree.map(lambda a: rng.normal(0, 0.1, a.shape).astype(a.dtype), abstract)

        def loss(params):
            out = nnx.merge(graphdef, params, rest, copy=True)(tokens)
            return optax.softmax_cross_entropy_with_integer_labels(out, tokens).mean()

        step = jax.jit(jax.value_and_grad(loss)).lower(params).compile()
        return float(step(params)[0]), step.memory_analysis().temp_size_in_bytes

    (plain, plain_peak), (full, full_peak) = compiled("none"), compiled("full")
    assert full == plain
    assert full_peak < 0.5 * plain_peak  # 154 kB instead of 421 kB when written
