"""A traced forward-mode linearisation (``torch.func.linearize``) with convolution tangents fused.

``torch.func.linearize(f, x)`` traces ``v -> J_f(x) v`` once into an FX graph of aten ops and folds
everything that does not depend on ``v`` into constants. For the gradient of a loss (so ``J_f`` is
the Hessian) the traced program of a convolution ``y = conv(a, W)`` back-propagates two tangent
terms into its input gradient, ``conv_T(g_t, W) + conv_T(g, W_t)``, and runs them as two
``convolution_backward`` calls. Both are the input gradient of one convolution with the output
channels stacked, ``conv_T([g_t, g], [W; W_t])``: one call of twice the channels, the same
multiply-adds. On CPU a strided convolution's input gradient costs several times its forward pass
per multiply-add, mostly per call and per output pixel rather than per channel, so the fused call
takes little more than one of the two (``benchmarks/curvature.py``: the CNN's Hessian-vector product
≈1.6 → ≈1.3 gradients). Before fusing, sums with a term known to be zero — what the data's zero
tangent becomes in the first layer — are dropped (:func:`drop_zero_terms`). Both rewrites are exact
identities; the graph is otherwise torch's.
"""
from __future__ import annotations

import operator
import warnings
from typing import Any, Callable

import torch
import torch.autograd.forward_ad as fwAD
from torch.fx import GraphModule, Node
from torch.fx.experimental import const_fold
from torch.fx.experimental.proxy_tensor import make_fx
from torch.utils._pytree import tree_flatten, tree_unflatten

_CONV_BACKWARD = torch.ops.aten.convolution_backward.default
_ADD = torch.ops.aten.add.Tensor
_INPUT_ONLY = [True, False, False]  # convolution_backward's output_mask: grad_input only


def _input_gradient_call(node: Any) -> Node | None:
    """The ``convolution_backward`` node if ``node`` is ``convolution_backward(...)[0]`` of an
    ungrouped, non-transposed convolution computing its input gradient only, used once."""
    if not isinstance(node, Node) or node.op != "call_function" or node.target is not operator.getitem:
        return None
    call, index = node.args
    if index != 0 or len(node.users) != 1 or not isinstance(call, Node) or call.target is not _CONV_BACKWARD:
        return None
    if len(call.users) != 1 or list(call.args[10]) != _INPUT_ONLY or call.args[7] or call.args[9] != 1:
        return None
    return call


def _meta(node: Any) -> torch.Tensor | None:
    return node.meta.get("val") if isinstance(node, Node) else None


def fuse_convolution_tangents(gm: GraphModule) -> int:
    """Rewrite ``conv_T(g1, W1) + conv_T(g2, W2)`` (two input gradients of one convolution's
    geometry, summed) into ``conv_T([g1, g2], [W1; W2])``, one call; returns how many sums were fused."""
    graph = gm.graph
    graph.eliminate_dead_code()  # unused outputs of convolution_backward (mutating ops are kept)
    fused = 0
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target is not _ADD or len(node.args) != 2 or node.kwargs:
            continue
        first, second = (_input_gradient_call(a) for a in node.args)
        if first is None or second is None or first is second:
            continue
        # same geometry (bias sizes aside: no bias gradient is computed) and shapes that stack
        if tuple(first.args[4:10]) != tuple(second.args[4:10]):
            continue
        (g1, x1, w1), (g2, x2, w2) = ([_meta(a) for a in c.args[:3]] for c in (first, second))
        if any(t is None for t in (g1, x1, w1, g2, x2, w2)):
            continue
        if (x1.shape != x2.shape or w1.shape != w2.shape or g1.shape != g2.shape
                or len({t.dtype for t in (g1, x1, w1, g2, x2, w2)}) != 1):
            continue
        with graph.inserting_before(node):
            grads = graph.call_function(torch.ops.aten.cat.default, ([first.args[0], second.args[0]], 1))
            weights = graph.call_function(torch.ops.aten.cat.default, ([first.args[2], second.args[2]], 0))
            call = graph.call_function(_CONV_BACKWARD, (grads, first.args[1], weights, [2 * w1.shape[0]],
                                                          *first.args[4:10], _INPUT_ONLY))
            total = graph.call_function(operator.getitem, (call, 0))
        node.replace_all_uses_with(total)
        for dead in (node, *node.args, first, second):
            graph.erase_node(dead)
        fused += 1
    graph.lint()
    gm.recompile()
    return fused


_ATEN = torch.ops.aten
#: ops that create zeros, and ops whose result is zero when their first argument is (shape/alias ops)
_ZERO_SOURCES = {_ATEN.zeros.default, _ATEN.zeros_like.default, _ATEN.new_zeros.default,
                 _ATEN._efficientzerotensor.default}
_ZERO_KEEPING = {_ATEN.expand.default, _ATEN.view.default, _ATEN.reshape.default, _ATEN.alias.default,
                 _ATEN.t.default, _ATEN.permute.default, _ATEN.clone.default, _ATEN._to_copy.default}
_BILINEAR = {_ATEN.mm.default, _ATEN.bmm.default, _ATEN.mul.Tensor}


def _known_zeros(graph: torch.fx.Graph) -> set[Node]:
    """Nodes whose value is zero whatever the tangents: zeros (the tangent of an input that is not
    differentiated, e.g. the data) and what linear ops make of them."""
    zeros: set[Node] = set()
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        target, args = node.target, node.args
        if target in _ZERO_SOURCES:
            zeros.add(node)
        elif target in _ZERO_KEEPING and args and args[0] in zeros:
            zeros.add(node)
        elif target in _BILINEAR and any(a in zeros for a in args[:2]):
            zeros.add(node)
        elif target is _ATEN.convolution.default and args[2] is None and (args[0] in zeros or args[1] in zeros):
            zeros.add(node)
        elif target is operator.getitem and isinstance(args[0], Node) and args[0].target is _CONV_BACKWARD:
            grad_out, inp, weight = args[0].args[:3]
            # convolution_backward's outputs: input gradient (needs the weight), weight gradient (needs
            # the input), bias gradient; each is linear in the output gradient
            needs = {0: weight, 1: inp}.get(args[1])
            if grad_out in zeros or (needs is not None and needs in zeros):
                zeros.add(node)
    # a zero buffer filled in place (``out = torch.zeros(...); out[:, :3] = a``, traced as a write into
    # a view of it) is not zero where it is read: when a zero or a view of one is written, assume nothing
    views, mutated = set(zeros), set()
    for node in graph.nodes:
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
            continue
        if node.target._schema.is_mutable:
            mutated.update(a for a in node.args if isinstance(a, Node))
        elif node.args and node.args[0] in views and _is_view(node):
            views.add(node)
    return set() if mutated & views else zeros


def drop_zero_terms(gm: GraphModule) -> int:
    """Replace ``t + z`` (and ``t - z``) by ``t`` where ``z`` is known to be zero and the sum has
    ``t``'s shape and dtype; returns how many terms were dropped. After const folding such a ``z``
    is a stored zero tensor that every product would add (an activation-sized add per convolution
    or linear layer that reads the data)."""
    graph = gm.graph
    zeros = _known_zeros(graph)
    dropped = 0
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in (_ADD, _ATEN.sub.Tensor) or len(node.args) != 2:
            continue
        if node.kwargs.get("alpha", 1) != 1:
            continue
        a, b = node.args
        keep = a if b in zeros else (b if a in zeros and node.target is _ADD else None)
        out, kept = _meta(node), _meta(keep)
        if keep is None or out is None or kept is None or kept.shape != out.shape or kept.dtype != out.dtype:
            continue
        node.replace_all_uses_with(keep)
        graph.erase_node(node)
        dropped += 1
    graph.eliminate_dead_code()
    graph.lint()
    gm.recompile()
    return dropped


def _is_view(node: Any) -> bool:
    """Whether ``node`` is an aten op that returns a view (alias) of an input without writing to it."""
    if not isinstance(node, Node) or node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
        return False
    schema = node.target._schema
    return not schema.is_mutable and any(r.alias_info is not None for r in schema.returns)


def writes_into_views(graph: torch.fx.Graph) -> list[Node]:
    """The in-place ops of ``graph`` that write into a view of another tensor (``h[:, :3] = a`` on a
    buffer): ``torch.func.linearize``'s constant folding does not keep such writes in order — its
    products come out wrong, silently (tests/test_linearize.py) — so such programs are refused."""
    return [node for node in graph.nodes if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload)
            and node.target._schema.is_mutable and node.args and _is_view(node.args[0])]


def _mutated_args(node: Node) -> list[Any]:
    """The arguments an in-place (mutable) aten op writes to."""
    schema = node.target._schema
    return [a for a, arg in zip(node.args, schema.arguments)
            if arg.alias_info is not None and arg.alias_info.is_write and isinstance(a, Node)]


def written_tensors(graph: torch.fx.Graph) -> tuple[set[Node], list[Node]]:
    """``(keep, outside)`` for the in-place ops left in a functionalised traced program.

    After functionalisation every write into a tensor that depends on the primals or the tangents is
    out of place; what is left writes into tensors computed from closed-over data only (e.g.
    ``s = x.abs(); s.add_(1)`` in a model's ``forward``), or into fresh buffers (forward AD's copy of a
    tangent). torch's constant folding never folds an in-place op (it is impure) but does fold the
    tensor it writes into: every call would then write into the same stored constant again — the
    products drift. ``keep`` is every node aliasing a written tensor (its base, its views, the
    writes' results): left unfolded, they are computed afresh and written in order on every call,
    so the program stays pure. ``outside`` lists writes into tensors from outside the trace (a
    closed-over tensor, a primal), which no call should repeat: :func:`linearize` refuses those."""
    # alias roots: a view, or an in-place op's aliased result, shares its base's root
    root: dict[Node, Node] = {}
    written: dict[Node, list[Node]] = {}
    for node in graph.nodes:
        r = node
        if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload):
            schema = node.target._schema
            if schema.is_mutable:
                targets = _mutated_args(node)
                written[node] = [root.get(t, t) for t in targets]
                if targets and any(ret.alias_info is not None for ret in schema.returns):
                    r = root.get(targets[0], targets[0])
            elif _is_view(node) and node.args and isinstance(node.args[0], Node):
                r = root.get(node.args[0], node.args[0])
        root[node] = r
    roots = {r for rs in written.values() for r in rs}
    outside = [n for n, rs in written.items() if any(r.op in ("get_attr", "placeholder") for r in rs)]
    keep = {n for n in graph.nodes if root[n] in roots and n.op == "call_function"}
    return keep | set(written), outside


def linearize(func: Callable, *primals: Any, fuse: bool = True) -> tuple[Callable, int]:
    """``(jvp_fn, fused)``: ``jvp_fn(*tangents)`` returns ``J_func(primals) · tangents`` as
    ``torch.func.linearize`` would, from one trace with zero terms dropped and the convolution
    tangents fused (:func:`drop_zero_terms`, :func:`fuse_convolution_tangents`; ``fuse=False`` keeps
    torch's graph). Tangents must have the primals' shapes, dtypes and devices (not checked:
    callers build them from flat vectors).

    **Purity.** The program is traced *functionalised*, with the primals as inputs: in-place ops on
    anything derived from the primals or tangents (``exp_``, ``add_``, ``log_`` in torch's loss and
    activation kernels) are traced out of place, then the primals are turned into constants and
    folded. (``torch.func.linearize`` traces the in-place ops as they are, and folding makes some of
    them write into stored constants on every call: successive products with the same tangent
    drift, 0.4 % to 160 % on a conv net with ``BCEWithLogitsLoss``.) The same tangents always give
    bit-identical results. In-place ops left after functionalisation (on data-only tensors) are not
    constant-folded (:func:`written_tensors`): they re-run on fresh tensors every call. Writes into
    tensors from outside the trace and programs that still write in place into a view
    (:func:`writes_into_views`) raise ``RuntimeError``; the operators then fall back to double
    backward."""
    flat_primals, primals_spec = tree_flatten(primals)
    num_primals = len(flat_primals)
    out_spec: list[Any] = [None]

    def tangent_program(*flat: torch.Tensor) -> list[torch.Tensor]:
        flat_p, flat_tangents = flat[:num_primals], flat[num_primals:]
        with fwAD.dual_level():
            duals = tree_unflatten([fwAD.make_dual(p, t) for p, t in zip(flat_p, flat_tangents)], primals_spec)
            flat_out, out_spec[0] = tree_flatten(func(*duals))
            tangents = [fwAD.unpack_dual(o) for o in flat_out]
            return [torch.zeros_like(d.primal) if d.tangent is None else d.tangent for d in tangents]

    placeholders = tuple(p.new_empty(()).expand_as(p) for p in flat_primals)
    with warnings.catch_warnings():
        # torch's own chatter: fx const-folding (UserWarning), make_fx's use of torch.jit (DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        # trace with the primals as inputs, then re-trace that aten program functionalised (torch's
        # functionalisation does not compose with forward AD directly: it drops the tangents)
        traced = make_fx(tangent_program)(*flat_primals, *placeholders)
        graph = make_fx(torch.func.functionalize(traced, remove="mutations"))(*flat_primals, *placeholders)
        _primals_to_constants(graph, flat_primals)
        writes = writes_into_views(graph.graph)
        if writes:
            raise RuntimeError(f"the function writes in place into a view ({writes[0].target}); its traced "
                               "linearisation would not keep that write in order")
        if fuse:
            drop_zero_terms(graph)
        fused = fuse_convolution_tangents(graph) if fuse else 0
        keep, outside = written_tensors(graph.graph)
        if outside:
            raise RuntimeError(f"the function writes in place into a tensor from outside the trace "
                               f"({outside[0].target} on {outside[0].args[0]}); every product would repeat that write")
        keep_names = {n.name for n in keep}
        program = const_fold.split_const_subgraphs(graph, skip_folding_node_fn=lambda n: n.name in keep_names)

    def jvp_fn(*tangents: Any) -> Any:
        flat, _ = tree_flatten(tangents)
        return tree_unflatten(list(program(*flat)), out_spec[0])
    return jvp_fn, fused


def _primals_to_constants(gm: GraphModule, primals: list[torch.Tensor]) -> None:
    """Replace the first ``len(primals)`` placeholders of ``gm`` by stored constants holding the
    primals (so constant folding computes everything that depends on them once)."""
    graph = gm.graph
    placeholders = [n for n in graph.nodes if n.op == "placeholder"][:len(primals)]
    first = next(n for n in graph.nodes if n.op != "placeholder")
    for k, (node, value) in enumerate(zip(placeholders, primals)):
        name = f"_curvnb_primal_{k}"
        setattr(gm, name, value)
        with graph.inserting_before(first):
            const = graph.get_attr(name)
        const.meta.update(node.meta)
        node.replace_all_uses_with(const)
        graph.erase_node(node)
    graph.lint()
    gm.recompile()
