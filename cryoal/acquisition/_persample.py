"""Exact per-sample gradient norms for a batch, without a Python loop over samples.

How it works (one forward, one batched backward per cotangent direction):

1. Forward hooks on every module that owns a selected parameter record the module's
   input ``a`` and output ``z`` (the output handed downstream is a clone, so in-place
   ops such as ``ReLU(inplace=True)`` cannot corrupt the recorded tensor).
2. ``torch.autograd.grad`` of the (summed) per-sample losses with respect to the recorded
   outputs gives every sample's ``g = ∂ℓ_i/∂z_i`` in one batched backward — in eval mode
   samples do not interact, so row ``i`` of ``g`` belongs to sample ``i`` alone. Weight
   gradients of the network are never formed; max-pooling, activations, MONAI blocks and
   any other parameter-free op are differentiated by autograd as usual.
3. Per layer, the per-sample parameter gradient norms follow in closed form:

   - ``nn.Linear`` with ``(B, in)`` input: ``‖∇W ℓ_i‖² = ‖g_i‖²·‖a_i‖²``,
     ``‖∇b ℓ_i‖² = ‖g_i‖²`` (sequence inputs: ``Σ_t g_it a_itᵀ`` per sample);
   - ``nn.Conv1d/2d/3d``: the per-sample weight gradients come from ONE grouped
     convolution-backward call with the batch folded into the groups (``groups = B·G``);
     bias: ``Σ_space g_i``;
   - ``nn.ConvTranspose1d/2d/3d``: likewise, one transposed convolution-backward call;
   - ``BatchNorm`` with running statistics: ``∇γ = Σ_space g_i·x̂_i``, ``∇β = Σ_space g_i``;
   - any other module owning parameters (PReLU, GroupNorm, LayerNorm, custom layers):
     ``torch.func.vmap`` of the VJP of that module alone.

When the model cannot be treated this way (batch statistics in a normalisation layer, a
parameter used outside its module's forward, parametrised weights, non-tensor outputs)
the engine falls back, correctly, to a batch-1 loop with ``torch.autograd.grad``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vjp, vmap
from torch.nn.modules.batchnorm import _BatchNorm

from cryoal.acquisition._stream import autocast, eval_mode
from cryoal.errors import ConfigError

__all__ = [
    "Backprop",
    "PerSampleLoss",
    "IGNORE_INDEX",
    "Reduction",
    "grad_sq_norms",
    "is_cross_entropy",
    "loss_cotangents",
    "per_sample_class_grad_norms",
    "per_sample_grad_norms",
    "reduce_norms",
    "select_params",
]

log = logging.getLogger(__name__)

Reduction = Literal["l2", "layerwise-sum"]
REDUCTIONS: tuple[str, ...] = ("l2", "layerwise-sum")

Backprop = Callable[[Tensor], list[tuple[Tensor, Tensor | None]]]

PerSampleLoss = Callable[[Tensor, Tensor], Tensor]
"""A per-sample label loss ``loss(logits (B, C), target (B,) int64) -> (B,)``, or for
segmentation ``loss(logits (B, C, *spatial), target (B, *spatial) int64) -> (B,)``
(e.g. :meth:`cryoal.tasks.Task.per_sample_loss`)."""

IGNORE_INDEX = -1
"""Target value of an unannotated voxel (:data:`cryoal.tasks.seg_metrics.IGNORE`): the
closed-form voxel cross-entropy leaves it out, as
:func:`~cryoal.tasks.seg_metrics.voxel_cross_entropy` does in training."""

_CE_MARK = "__cryoal_cross_entropy__"

L = TypeVar("L", bound=Callable[..., Tensor])


def is_cross_entropy(fn: L) -> L:
    """Declare ``fn`` (a function or method) to be plain per-sample cross-entropy.

    For logits ``(B, C)``: cross-entropy; for per-voxel logits ``(B, C, *spatial)``: the
    cross-entropy averaged over the annotated voxels of each sample (target
    :data:`IGNORE_INDEX` left out, 0 for a sample with none), i.e.
    :func:`~cryoal.tasks.seg_metrics.voxel_cross_entropy`. Gradient norms of a loss so
    declared use the closed-form logit gradient (:func:`loss_cotangents`; bitwise the
    same as ``loss=None``) instead of autograd through ``fn``. A subclass that overrides
    a declared method is not declared.
    """
    setattr(fn, _CE_MARK, True)
    return fn


def _closed_form(loss: PerSampleLoss | None) -> bool:
    """Whether ``loss`` is ``None`` or declared cross-entropy (:func:`is_cross_entropy`)."""
    return loss is None or bool(getattr(getattr(loss, "__func__", loss), _CE_MARK, False))


"""Maps the model output to ``(root, grad_output)`` pairs, one per gradient direction.

Each pair defines one per-sample gradient ``∇θ ℓ_i`` through
``autograd.grad(root, ..., grad_outputs=grad_output)``; ``root`` must be a sum of
per-sample terms (or the output itself with a per-sample cotangent).
"""

_CONV_FORWARDS = {nn.Conv1d.forward, nn.Conv2d.forward, nn.Conv3d.forward}
_CONVT_FORWARDS = {
    nn.ConvTranspose1d.forward,
    nn.ConvTranspose2d.forward,
    nn.ConvTranspose3d.forward,
}


@dataclass
class _Record:
    module: nn.Module
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    output: Tensor


class _Capture:
    """Forward hooks recording the input/output of parameter-owning modules."""

    def __init__(self) -> None:
        self.records: list[_Record] = []
        self.active = True
        self.unsupported: str | None = None

    def hook(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any
    ) -> Any:
        if not self.active:
            return None
        if not isinstance(out, Tensor) or not out.requires_grad:
            if self.unsupported is None and not isinstance(out, Tensor):
                self.unsupported = f"{type(module).__name__} returns {type(out).__name__}"
            return None
        self.records.append(_Record(module, args, kwargs, out))
        return out.clone()


def select_params(
    model: nn.Module, params: Iterable[str | Tensor] | None = None
) -> list[tuple[str, nn.Parameter]]:
    """The parameters whose gradient norm is measured, in ``named_parameters`` order.

    Parameters
    ----------
    model
        The network.
    params
        ``None``: every parameter with ``requires_grad``. Otherwise parameter names
        (as in ``model.named_parameters()``) or the parameter tensors themselves.

    Raises
    ------
    ConfigError
        No parameter is selected, or a name/tensor does not belong to ``model``.
    """
    named = list(model.named_parameters())
    if params is None:
        chosen = [(n, p) for n, p in named if p.requires_grad]
    else:
        by_name = dict(named)
        by_id = {id(p): n for n, p in named}
        wanted: set[str] = set()
        for item in params:
            if isinstance(item, str):
                if item not in by_name:
                    close = [n for n in by_name if n.endswith(item.split(".")[-1])][:3]
                    raise ConfigError(
                        f"parameter {item!r} is not in the model (e.g. {', '.join(close) or 'none'})"
                    )
                wanted.add(item)
            elif id(item) in by_id:
                wanted.add(by_id[id(item)])
            else:
                raise ConfigError("a tensor passed in params= is not a parameter of the model")
        chosen = [(n, p) for n, p in named if n in wanted]
    if not chosen:
        raise ConfigError(
            "the model has no trainable parameters to take gradient norms of: "
            "unfreeze some (requires_grad=True) or pass params="
        )
    return chosen


def check_reduction(reduction: str) -> str:
    """Return ``reduction`` if it is one of :data:`REDUCTIONS`.

    Raises
    ------
    ConfigError
        Unknown reduction (the message lists the known ones).
    """
    if reduction not in REDUCTIONS:
        raise ConfigError(f"unknown reduction {reduction!r}: use one of {', '.join(REDUCTIONS)}")
    return reduction


def reduce_norms(sq: Tensor, reduction: str) -> Tensor:
    """Reduce squared per-tensor norms ``(..., P)`` to one norm per sample ``(...)``.

    ``"l2"``: ``sqrt(Σ_p ‖g_p‖²)`` (global L2 norm); ``"layerwise-sum"``: ``Σ_p ‖g_p‖``.
    """
    if check_reduction(reduction) == "l2":
        return sq.sum(-1).clamp_min(0).sqrt()
    return sq.clamp_min(0).sqrt().sum(-1)


def _needs_loop(model: nn.Module) -> str | None:
    for name, m in model.named_modules():
        if isinstance(m, _BatchNorm) and (m.training or m.running_mean is None):
            return f"{name or type(m).__name__} normalises with batch statistics"
    return None


def _owners(
    model: nn.Module, chosen: Sequence[tuple[str, nn.Parameter]]
) -> list[tuple[nn.Module, dict[str, nn.Parameter]]]:
    ids = {id(p) for _, p in chosen}
    out = []
    for m in model.modules():
        direct = {
            n: p
            for n, p in m.named_parameters(recurse=False, remove_duplicate=False)
            if id(p) in ids
        }
        if direct:
            out.append((m, direct))
    return out


# ----------------------------------------------------------------------------- layer rules


def _linear_sq(a: Tensor, g: Tensor, names: Iterable[str]) -> dict[str, Tensor]:
    """Closed form for ``(B, in)`` inputs: ‖g‖²‖a‖² and ‖g‖²."""
    g2 = g.pow(2).sum(-1)
    out = {}
    for n in names:
        out[n] = g2 * a.pow(2).sum(-1) if n == "weight" else g2
    return out


def _linear_grads(a: Tensor, g: Tensor, names: Iterable[str]) -> dict[str, Tensor]:
    b = a.shape[0]
    a3 = a.reshape(b, -1, a.shape[-1])
    g3 = g.reshape(b, -1, g.shape[-1])
    out = {}
    for n in names:
        out[n] = torch.einsum("bto,bti->boi", g3, a3) if n == "weight" else g3.sum(1)
    return out


def _conv_grads(m: nn.Module, a: Tensor, g: Tensor, names: Iterable[str]) -> dict[str, Tensor]:
    nd = a.dim() - 2
    b = a.shape[0]
    groups: int = m.groups  # type: ignore[assignment]
    cin: int = m.in_channels  # type: ignore[assignment]
    cout: int = m.out_channels  # type: ignore[assignment]
    out = {}
    for n in names:
        if n == "bias":
            out[n] = g.reshape(b, cout, -1).sum(-1)
            continue
        padding: Any = m.padding
        if isinstance(padding, str) or m.padding_mode != "zeros":
            mode = "constant" if m.padding_mode == "zeros" else str(m.padding_mode)
            a = F.pad(a, m._reversed_padding_repeated_twice, mode=mode)  # type: ignore[arg-type]
            padding = (0,) * nd
        x = a.reshape(1, b * cin, *a.shape[2:])
        go = g.reshape(1, b * cout, *g.shape[2:])
        kernel = tuple(m.kernel_size)  # type: ignore[arg-type]
        wsize = (b * cout, cin // groups, *kernel)
        dw = torch.ops.aten.convolution_backward(
            go,
            x,
            go.new_empty(1).expand(wsize),
            None,
            list(m.stride),  # type: ignore[arg-type]
            list(padding),
            list(m.dilation),  # type: ignore[arg-type]
            False,
            [0] * nd,
            b * groups,
            (False, True, False),
        )[1]
        out[n] = dw.reshape(b, cout, cin // groups, *kernel)
    return out


def _conv_transpose_grads(
    m: nn.Module, a: Tensor, g: Tensor, names: Iterable[str]
) -> dict[str, Tensor]:
    """``nn.ConvTranspose1d/2d/3d`` (zero padding, called without ``output_size``): ONE
    transposed convolution-backward call with the batch folded into the groups."""
    b = a.shape[0]
    groups: int = m.groups  # type: ignore[assignment]
    cin: int = m.in_channels  # type: ignore[assignment]
    cout: int = m.out_channels  # type: ignore[assignment]
    kernel = tuple(m.kernel_size)  # type: ignore[arg-type]
    out = {}
    for n in names:
        if n == "bias":
            out[n] = g.reshape(b, cout, -1).sum(-1)
            continue
        dw = torch.ops.aten.convolution_backward(
            g.reshape(1, b * cout, *g.shape[2:]),
            a.reshape(1, b * cin, *a.shape[2:]),
            g.new_empty(1).expand((b * cin, cout // groups, *kernel)),
            None,
            list(m.stride),  # type: ignore[arg-type]
            list(m.padding),  # type: ignore[arg-type]
            list(m.dilation),  # type: ignore[arg-type]
            True,
            list(m.output_padding),  # type: ignore[arg-type]
            b * groups,
            (False, True, False),
        )[1]
        out[n] = dw.reshape(b, cin, cout // groups, *kernel)
    return out


def _bn_grads(m: _BatchNorm, a: Tensor, g: Tensor, names: Iterable[str]) -> dict[str, Tensor]:
    """``∇γ = Σ_space g·x̂ = (Σ g·a − μ·Σ g)/σ`` and ``∇β = Σ_space g`` (running stats)."""
    b, c = a.shape[0], a.shape[1]
    g3 = g.reshape(b, c, -1)
    gsum = g3.sum(-1)
    out = {}
    for n in names:
        if n == "weight":
            rm = m.running_mean.to(a.dtype)  # type: ignore[union-attr]
            rv = m.running_var.to(a.dtype)  # type: ignore[union-attr]
            ga = torch.einsum("bcs,bcs->bc", g3, a.reshape(b, c, -1))
            out[n] = (ga - rm * gsum) * torch.rsqrt(rv + m.eps)
        else:
            out[n] = gsum
    return out


def _generic_grads(
    m: nn.Module, direct: dict[str, nn.Parameter], rec: _Record, g: Tensor, cap: _Capture
) -> dict[str, Tensor]:
    """Per-sample grads of one module's own parameters by vmap over its VJP."""
    b = g.shape[0]
    args = rec.args
    batched = [isinstance(x, Tensor) and x.dim() > 0 and x.shape[0] == b for x in args]
    pvals = {n: p.detach() for n, p in direct.items()}
    dtype = next(iter(pvals.values())).dtype
    # under autocast the recorded input/grad may be half precision: recompute in the
    # parameters' precision
    bargs = [
        x.detach().to(dtype) if x.is_floating_point() else x.detach()
        for x, is_b in zip(args, batched, strict=True)
        if is_b
    ]
    g = g.to(dtype)

    def one(pv: dict[str, Tensor], xs: list[Tensor], gi: Tensor) -> dict[str, Tensor]:
        it = iter(xs)
        call = tuple(
            next(it).unsqueeze(0) if is_b else x for x, is_b in zip(args, batched, strict=True)
        )

        def f(p: dict[str, Tensor]) -> Tensor:
            return functional_call(m, p, call, rec.kwargs)  # type: ignore[no-any-return]

        _, pullback = vjp(f, pv)[:2]
        return pullback(gi.unsqueeze(0))[0]  # type: ignore[no-any-return]

    cap.active = False
    try:
        grads: dict[str, Tensor] = vmap(one, in_dims=(None, 0, 0))(pvals, bargs, g)
        return grads
    finally:
        cap.active = True


def _module_rule(m: nn.Module, rec: _Record) -> str:
    a = rec.args[0] if rec.args else None
    if rec.kwargs or len(rec.args) != 1 or not isinstance(a, Tensor):
        return "generic"
    if type(m).forward is nn.Linear.forward and a.dim() >= 2:
        return "linear"
    if type(m).forward in _CONV_FORWARDS and a.dim() == len(m.kernel_size) + 2:  # type: ignore[arg-type]
        return "conv"
    if (
        type(m).forward in _CONVT_FORWARDS
        and a.dim() == len(m.kernel_size) + 2  # type: ignore[arg-type]
        and m.padding_mode == "zeros"
    ):
        return "conv-transpose"
    if type(m).forward is _BatchNorm.forward and not m.training and a.dim() >= 2:
        return "bn"
    return "generic"


def _rule_grads(
    rule: str, m: nn.Module, direct: dict[str, nn.Parameter], rec: _Record, g: Tensor, cap: _Capture
) -> dict[str, Tensor]:
    if rule == "generic":
        return _generic_grads(m, direct, rec, g, cap)
    a = rec.args[0].detach()
    dtype = torch.promote_types(direct[next(iter(direct))].dtype, torch.float32)
    a, g = a.to(dtype), g.to(dtype)
    if rule == "linear":
        return _linear_grads(a, g, direct)
    if rule == "conv":
        return _conv_grads(m, a, g, direct)
    if rule == "conv-transpose":
        return _conv_transpose_grads(m, a, g, direct)
    return _bn_grads(m, a, g, direct)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- engines


def _hooked(
    model: nn.Module,
    x: Tensor,
    backprop: Backprop,
    chosen: Sequence[tuple[str, nn.Parameter]],
    amp: bool,
) -> tuple[Tensor, Tensor] | str:
    """Hook engine; returns ``(sq (V, B, P), outputs)`` or the reason it cannot run."""
    owners = _owners(model, chosen)
    cap = _Capture()
    handles = [m.register_forward_hook(cap.hook, with_kwargs=True) for m, _ in owners]
    try:
        with torch.enable_grad(), autocast(x.device, amp):
            out = model(x)
        pairs = backprop(out)
    finally:
        for h in handles:
            h.remove()
    if cap.unsupported:
        return cap.unsupported
    b = x.shape[0]
    fired = {id(r.module) for r in cap.records}
    unfired = [(m, direct) for m, direct in owners if id(m) not in fired]
    if unfired:
        # parameters of modules that never ran: unused (zero gradient) or used elsewhere
        loose = [p for _, direct in unfired for p in direct.values()]
        root, grad_out = pairs[0]
        used = torch.autograd.grad(
            root, loose, grad_outputs=grad_out, retain_graph=True, allow_unused=True
        )
        for (m, direct), g in zip([(m, d) for m, d in unfired for _ in d], used, strict=True):
            if g is not None:
                return f"{type(m).__name__} owns parameters ({', '.join(direct)}) used outside its forward"
        owners = [(m, direct) for m, direct in owners if id(m) in fired]
    for r in cap.records:
        if r.output.dim() == 0 or r.output.shape[0] != b:
            return f"{type(r.module).__name__} output {tuple(r.output.shape)} has no batch dim"
    direct_of = {id(m): direct for m, direct in owners}
    pos = {id(p): i for i, (_, p) in enumerate(chosen)}
    # number of (module call, parameter) contributions per parameter
    count: dict[int, int] = {}
    for r in cap.records:
        for p in direct_of[id(r.module)].values():
            count[id(p)] = count.get(id(p), 0) + 1
    rules = [_module_rule(r.module, r) for r in cap.records]
    sq = x.new_zeros((len(pairs), b, len(chosen)), dtype=_float(chosen[0][1].dtype))
    outs = [r.output for r in cap.records]
    for v, (root, grad_out) in enumerate(pairs):
        if not outs:  # every measured parameter is unused: zero gradients
            break
        grads = torch.autograd.grad(
            root, outs, grad_outputs=grad_out, retain_graph=True, allow_unused=True
        )
        shared: dict[int, Tensor] = {}
        for r, rule, g in zip(cap.records, rules, grads, strict=True):
            if g is None:
                continue
            direct = direct_of[id(r.module)]
            single = all(count[id(p)] == 1 for p in direct.values())
            if single and rule == "linear" and r.args[0].dim() == 2:
                dtype = torch.promote_types(next(iter(direct.values())).dtype, torch.float32)
                res = _linear_sq(r.args[0].detach().to(dtype), g.to(dtype), direct)
                for n, s in res.items():
                    sq[v, :, pos[id(direct[n])]] += s
                continue
            res = _rule_grads(rule, r.module, direct, r, g, cap)
            for n, gr in res.items():
                pid = id(direct[n])
                if count[pid] == 1:
                    sq[v, :, pos[pid]] += gr.reshape(b, -1).pow(2).sum(-1)
                else:
                    shared[pid] = shared[pid] + gr if pid in shared else gr
        for pid, gr in shared.items():
            sq[v, :, pos[pid]] += gr.reshape(b, -1).pow(2).sum(-1)
    return sq, out.detach()


def _loop(
    model: nn.Module,
    x: Tensor,
    backprop: Backprop,
    chosen: Sequence[tuple[str, nn.Parameter]],
    amp: bool,
) -> tuple[Tensor, Tensor]:
    """Batch-1 loop with ``torch.autograd.grad`` (the always-correct fallback)."""
    params = [p for _, p in chosen]
    rows: list[Tensor] = []
    outs: list[Tensor] = []
    for i in range(x.shape[0]):
        with torch.enable_grad(), autocast(x.device, amp):
            out = model(x[i : i + 1])
        per_v = []
        for root, grad_out in backprop(out):
            gs = torch.autograd.grad(
                root, params, grad_outputs=grad_out, retain_graph=True, allow_unused=True
            )
            per_v.append(
                torch.stack(
                    [
                        x.new_zeros((), dtype=torch.float32)
                        if gr is None
                        else gr.float().pow(2).sum()
                        if gr.dtype in (torch.float16, torch.bfloat16)
                        else gr.pow(2).sum()
                        for gr in gs
                    ]
                ).to(torch.promote_types(params[0].dtype, torch.float32))
            )
        rows.append(torch.stack(per_v))
        outs.append(out.detach())
    return torch.stack(rows, dim=1), torch.cat(outs)


def grad_sq_norms(
    model: nn.Module,
    x: Tensor,
    backprop: Backprop,
    chosen: Sequence[tuple[str, nn.Parameter]],
    *,
    amp: bool = False,
) -> tuple[Tensor, Tensor]:
    """Squared per-sample, per-parameter-tensor gradient norms of one batch.

    Parameters
    ----------
    model
        Network in eval mode (samples must not interact).
    x
        ``(B, C, ...)`` inputs on the model's device.
    backprop
        Maps the model output to one ``(root, grad_output)`` pair per direction.
    chosen
        Parameters measured (see :func:`select_params`).
    amp
        Autocast the forward pass (CUDA).

    Returns
    -------
    sq : Tensor
        ``(V, B, P)`` squared norms ``‖∇θ_p ℓ_v(x_i)‖²`` per direction, sample, tensor.
    outputs : Tensor
        The detached model outputs ``(B, ...)``.
    """
    reason = _needs_loop(model)
    if reason is None:
        res = _hooked(model, x, backprop, chosen, amp)
        if not isinstance(res, str):
            return res
        reason = res
    log.debug("per-sample gradients by batch-1 loop: %s", reason)
    return _loop(model, x, backprop, chosen, amp)


def _chunks(x: Tensor, chunk_size: int | None) -> list[Tensor]:
    if chunk_size is None:
        return [x]
    if chunk_size <= 0:
        raise ConfigError(f"chunk_size must be a positive integer, got {chunk_size}")
    return list(torch.split(x, chunk_size))


def per_sample_grad_norms(
    model: nn.Module,
    inputs: Tensor,
    loss_fn: Callable[[Tensor], Tensor],
    *,
    reduction: str = "l2",
    params: Iterable[str | Tensor] | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """Exact per-sample gradient norms ``‖∇θ ℓ(x_i)‖`` of a batch.

    The model is evaluated in eval mode (dropout off, BatchNorm with running statistics)
    and restored to its previous mode afterwards. No Python loop over samples: one
    forward and one batched backward per chunk (see the module docstring).

    Parameters
    ----------
    model
        Network mapping ``(B, C, ...)`` inputs to outputs ``(B, ...)``.
    inputs
        ``(B, C, ...)`` batch on the model's device.
    loss_fn
        Maps the model output ``(B, ...)`` to per-sample losses ``(B,)``; loss ``i``
        may depend on output row ``i`` only (e.g. entropy of the softmax, or a
        segmentation loss averaged over voxels).
    reduction
        ``"l2"``: global L2 norm over all selected parameters; ``"layerwise-sum"``: sum
        over parameter tensors of each tensor's L2 norm (the released code's norm).
    params
        Parameter names or tensors to differentiate; default every parameter with
        ``requires_grad`` (frozen parameters do not count).
    chunk_size
        Samples per forward/backward; bounds memory for large batches.

    Returns
    -------
    Tensor
        ``(B,)`` norms, dtype of the parameters (at least float32).

    Raises
    ------
    ConfigError
        Unknown reduction, no trainable parameters, or ``loss_fn`` not returning ``(B,)``.
    """
    check_reduction(reduction)
    chosen = select_params(model, params)

    def backprop(out: Tensor) -> list[tuple[Tensor, Tensor | None]]:
        losses = loss_fn(out)
        if losses.shape != (out.shape[0],):
            raise ConfigError(
                f"loss_fn must return one loss per sample, shape ({out.shape[0]},); "
                f"got {tuple(losses.shape)}"
            )
        return [(losses.sum(), None)]

    res = []
    with eval_mode(model):
        for xc in _chunks(inputs, chunk_size):
            sq, _ = grad_sq_norms(model, xc, backprop, chosen)
            res.append(reduce_norms(sq[0], reduction))
    return torch.cat(res)


def _float(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def top_classes(probs: Tensor, k: int) -> Tensor:
    """``(B, k)`` indices of the ``k`` most probable classes, ties to the lower index."""
    return torch.sort(probs, dim=1, descending=True, stable=True).indices[:, :k]


def loss_cotangents(logits: Tensor, classes: Tensor, loss: PerSampleLoss | None) -> Tensor:
    """``(K, B, C, *spatial)`` cotangents ``∂ loss(z_i, y)/∂z_i``, one per target ``y = classes[:, j]``.

    ``loss=None`` (or a loss declared with :func:`is_cross_entropy`): cross-entropy in
    closed form, ``p − e_y`` for logits ``(B, C)``; for per-voxel logits
    ``(B, C, *spatial)`` the mean voxel cross-entropy over the ``V_i`` annotated voxels
    of sample ``i``, ``(p_v − e_{y_v})/V_i`` at an annotated voxel and 0 at an
    unannotated one (target :data:`IGNORE_INDEX`). Otherwise autograd through ``loss`` on
    a detached copy of the logits (no pass through the network), with the targets as
    given (the loss treats unannotated voxels as it does in training): the loss of
    sample ``i`` must depend on logits row ``i`` only.

    Parameters
    ----------
    logits
        ``(B, C)`` or ``(B, C, *spatial)`` logits (detached here).
    classes
        ``(B, K)`` or ``(B, K, *spatial)`` int64 targets, one column (map) per cotangent.
    loss
        Per-sample loss ``(logits, target (B,) or (B, *spatial) int64) -> (B,)``, or
        ``None``.

    Returns
    -------
    Tensor
        ``(K, B, C, *spatial)`` cotangents, dtype of the logits promoted to at least
        float32.

    Raises
    ------
    ConfigError
        ``classes`` does not match the logits' batch and spatial shape, or ``loss`` does
        not return one value per sample, ``(B,)``.
    """
    z = logits.detach().to(_float(logits.dtype))
    n, c = z.shape[:2]
    spatial = tuple(z.shape[2:])
    if classes.dim() < 2 or (classes.shape[0], *classes.shape[2:]) != (n, *spatial):
        raise ConfigError(
            f"targets {tuple(classes.shape)} do not fit logits {tuple(z.shape)}: "
            f"need ({n}, K{''.join(f', {d}' for d in spatial)})"
        )
    k = classes.shape[1]
    if _closed_form(loss):
        p = torch.softmax(z, dim=1)
        if not spatial:
            return torch.stack([p - F.one_hot(classes[:, j], c).to(p.dtype) for j in range(k)])
        return torch.stack([_voxel_ce_cotangent(p, classes[:, j]) for j in range(k)])
    assert loss is not None
    cots = []
    for j in range(k):
        zj = z.clone().requires_grad_(True)
        with torch.enable_grad():
            values = loss(zj, classes[:, j])
            if not isinstance(values, Tensor) or values.shape != (n,):
                shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
                raise ConfigError(
                    f"the per-sample loss must return one loss per sample, shape ({n},); "
                    f"got {shape}"
                )
            (g,) = torch.autograd.grad(values.sum(), zj, allow_unused=True)
        cots.append(torch.zeros_like(z) if g is None else g)
    return torch.stack(cots)


def _voxel_ce_cotangent(p: Tensor, target: Tensor) -> Tensor:
    """``∂/∂z`` of the mean cross-entropy over annotated voxels: ``(p − e_y)/V_i`` there, 0
    elsewhere; ``p`` `(B, C, *spatial)`, ``target`` `(B, *spatial)` → `(B, C, *spatial)`."""
    valid = target != IGNORE_INDEX
    cot = p - F.one_hot(target.long().clamp_min(0), p.shape[1]).movedim(-1, 1).to(p.dtype)
    cot = cot.masked_fill(~valid.unsqueeze(1), 0.0)
    counts = valid.flatten(1).sum(1).clamp_min(1).tolist()
    # one Python-scalar division per sample: the same rounding for a sample whatever its
    # batch (on CUDA a scalar divisor multiplies by its reciprocal, a tensor one divides)
    return torch.stack([ci / float(m) for ci, m in zip(cot, counts, strict=True)])


def per_sample_class_grad_norms(
    model: nn.Module,
    inputs: Tensor,
    *,
    top_k: int | None = None,
    reduction: str = "l2",
    params: Iterable[str | Tensor] | None = None,
    chunk_size: int | None = None,
    amp: bool = False,
    loss: PerSampleLoss | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample, per-class norms ``‖∇θ ℓ(f(x_i), y)‖`` from ONE forward pass per chunk.

    ``ℓ`` is ``loss`` (default cross-entropy). Its gradient with respect to the logits,
    ``∂ℓ(z, y)/∂z``, is the cotangent of class ``y``: ``p − e_y`` in closed form for
    cross-entropy, otherwise autograd through ``loss`` on the detached logits (cheap: the
    logits only, no second forward). Each class is one cotangent through the same forward
    graph (``retain_graph``), so the ``K`` class gradients cost ``K`` batched backward
    passes and one forward.

    Parameters
    ----------
    model
        Classifier returning logits ``(B, C)``.
    inputs
        ``(B, C_in, ...)`` batch on the model's device.
    top_k
        Only the ``k`` most probable classes of each sample (default: all ``C``).
    reduction, params, chunk_size
        As in :func:`per_sample_grad_norms`.
    amp
        Autocast the forward pass (CUDA).
    loss
        Per-sample label loss ``(logits (B, C), target (B,) int64) -> (B,)``, e.g.
        :meth:`cryoal.tasks.Task.per_sample_loss`, so acquisition measures the gradient of
        the loss the model is trained with; ``None`` (or a loss declared with
        :func:`is_cross_entropy`): cross-entropy in closed form.

    Returns
    -------
    norms : Tensor
        ``(B, K)`` gradient norms, column ``j`` for class ``classes[:, j]``.
    classes : Tensor
        ``(B, K)`` int64 class indices (all classes in order when ``top_k`` is None).
    probs : Tensor
        ``(B, C)`` softmax probabilities (detached).

    Raises
    ------
    ConfigError
        Bad ``top_k`` or reduction, logits not ``(B, C)``, or ``loss`` not returning ``(B,)``.
    """
    check_reduction(reduction)
    if top_k is not None and top_k <= 0:
        raise ConfigError(f"top_k must be a positive integer or None, got {top_k}")
    if loss is not None and not callable(loss):
        raise ConfigError(f"loss must be a callable (logits, target) -> (B,), got {loss!r}")
    chosen = select_params(model, params)
    norms, classes, probs = [], [], []
    with eval_mode(model):
        for xc in _chunks(inputs, chunk_size):

            def backprop(out: Tensor) -> list[tuple[Tensor, Tensor | None]]:
                if out.dim() != 2:
                    raise ConfigError(
                        f"class gradient norms need logits (B, C), got {tuple(out.shape)}"
                    )
                p = torch.softmax(out.detach().to(_float(out.dtype)), dim=1)
                n, c = p.shape
                k = c if top_k is None else min(top_k, c)
                cls = (
                    torch.arange(c, device=p.device).expand(n, c)
                    if top_k is None
                    else top_classes(p, k)
                )
                return [(out, cot.to(out.dtype)) for cot in loss_cotangents(out, cls, loss)]

            sq, out = grad_sq_norms(model, xc, backprop, chosen, amp=amp)
            norms.append(reduce_norms(sq, reduction).T)
            p = torch.softmax(out.to(_float(out.dtype)), dim=1)
            c = p.shape[1]
            k = c if top_k is None else min(top_k, c)
            classes.append(
                torch.arange(c, device=p.device).expand(p.shape[0], c)
                if top_k is None
                else top_classes(p, k)
            )
            probs.append(p)
    return torch.cat(norms), torch.cat(classes), torch.cat(probs)
