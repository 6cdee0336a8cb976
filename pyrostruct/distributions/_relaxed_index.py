r"""Straight-through categorical *indices*: the value of a relaxed ``Categorical`` site.

:class:`RelaxedIndex` is a ``torch.Tensor`` subclass holding the exact integer
category :math:`z = \arg\max_k(\ell_k + g_k)` (``dtype=torch.long``, as a
``Categorical`` sample) together with the straight-through one-hot :math:`\hat y`
it came from (forward: exactly ``one_hot(z)``; backward: the relaxed
Gumbel-softmax sample :math:`y = \mathrm{softmax}((\ell + g)/\tau)`). Through
``__torch_function__`` the operations that *use* the index keep a gradient path
to :math:`y`:

- **indexing a table** (``T[z]``, ``T[..., z]``, ``T[z, :, w]``,
  ``Vindex(T)[..., z, :]``, ``torch.gather``, ``torch.take_along_dim``,
  ``index_select``, ``F.embedding``): the forward value is the hard lookup ``T[z]`` exactly; the
  backward pass sees :math:`\sum_k \hat y_k\, T[\ldots, k, \ldots]`, i.e.

  .. math::

      T[z] + \sum_k (\hat y_k - \mathrm{sg}(\hat y_k))\,\mathrm{sg}(T[\ldots, k, \ldots]),
      \qquad \frac{\partial\, T[z]}{\partial \hat y_k} = T[\ldots, k, \ldots],

  (``sg`` = stop-gradient; the table gets its usual gradient from ``T[z]``).
  With several relaxed indices in one expression each one's gradient is taken
  with the others at their hard values (the derivative of the multilinear
  extension :math:`\sum_{k,j} \hat y_k \hat w_j T[k, j]` at the one-hot point);
- **one-hot and numbers**: ``F.one_hot(z, K)`` is :math:`\hat y` (a float
  tensor, forward exactly one-hot; without a live gradient it is torch's
  ``long`` one-hot, so write ``F.one_hot(z, K).float()`` or ``.to(locs)`` as
  for any ``Categorical`` sample); ``z.float()`` / ``z.double()`` /
  ``z.to(float_dtype)`` and any operation whose result is floating
  (``z * 0.5``) use :math:`\sum_k k\,\hat y_k`, which equals ``z`` in the
  forward pass, i.e. treat the categories as the numbers ``0..K-1``;
- **moving data** (``unsqueeze``, ``squeeze``, ``reshape``, ``view``,
  ``expand``, ``permute``, ``transpose``, ``z[..., None]``, ``z[mask]``,
  ``stack``/``cat`` of relaxed indices, ``unbind``, ...) and integer casts
  (``z.long()``, ``z.to(torch.int64)``, ``z.int()``) return relaxed indices;
- **integer or boolean results** (``z + 1``, ``z == k``, ``z.sum()``) and
  ops that need an integer tensor (``bincount``, ``scatter_add`` with ``z`` as
  the index, ``torch.where(z == k, a, b)``) are computed on the hard values,
  exactly as for a ``Categorical`` sample, and have no gradient through ``z``;
- **leaving torch** (``int(z)``, ``float(z)``, ``bool(z)``, ``z.item()``,
  ``z.tolist()``, ``z.numpy()``, ``operator.index(z)``) would cut the
  gradient silently, so it raises :class:`RelaxedValueError` naming the site
  while the value carries a gradient (in ``torch.no_grad()``, e.g. under
  :class:`pyro.infer.Predictive`, it works as on a plain tensor).

Without a live gradient (no parameter behind the logits, or ``torch.no_grad()``)
a :class:`RelaxedIndex` behaves exactly like a plain ``long`` tensor.

A value whose gradient path was lost entirely is reported after the backward
pass: the sample registers a hook on its relaxed one-hot and one on the Gumbel
scores behind it; when a backward pass reaches the scores (through the Concrete
``log_prob``) but not the one-hot, the site's value did not influence the loss
differentiably, and a :class:`RelaxationWarning` names the site.

How a value reports its misuse (:class:`RelaxedValueError`,
:class:`RelaxationWarning`, the backward-hook probe) is ``_relaxed_probe.py``;
the gradient term of a table lookup, plain tensor maths, ``_lookup_gradient.py``.
**Why the rest is one module of about 600 lines.** The tensor subclass, its
``__torch_function__`` and the handlers it dispatches to form one closed
protocol: every handler reads and writes the subclass's private fields
(``_hard``, ``_one_hot``, ``_scored``, ``_probe``) and re-wraps its results with
:meth:`RelaxedIndex.wrap`, while ``__torch_function__`` needs the table of every
handler. Split over modules, the handlers would import the class and the class
the handler table: an import cycle, or a table filled in as a side effect of
importing another module. So the module stays whole and is read in sections:
the class and its conversions; helpers; data movement (``_move``, ``_convert``);
table lookups (``_lookup`` and the ``gather`` / ``index_select`` / ``embedding`` /
``one_hot`` handlers); the dispatch table.

References:

[1] E. Jang, S. Gu, B. Poole, "Categorical Reparameterization with Gumbel-Softmax",
    ICLR 2017 (straight-through Gumbel-softmax).
[2] C. J. Maddison, A. Mnih, Y. W. Teh, "The Concrete Distribution: A Continuous
    Relaxation of Discrete Random Variables", ICLR 2017.
[3] Y. Bengio, N. Leonard, A. Courville, "Estimating or Propagating Gradients
    Through Stochastic Neurons for Conditional Computation", arXiv:1308.3432, 2013
    (the straight-through estimator).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from pyrostruct.distributions._lookup_gradient import straight_through_term
from pyrostruct.distributions._relaxed_probe import (  # the first two re-exported
    RelaxationWarning,
    RelaxedValueError,
    _escape_message,
    _Probe,
)

__all__ = ["RelaxedIndex", "RelaxedValueError", "RelaxationWarning"]


def _plain(fn, *args, **kwargs):
    with torch._C.DisableTorchFunctionSubclass():
        return fn(*args, **kwargs)


class RelaxedIndex(torch.Tensor):
    r"""An exact categorical index that carries its straight-through one-hot.

    Made by :meth:`pyrostruct.distributions.ConcreteCategorical.rsample`; see the
    module docstring (``pyrostruct.distributions._relaxed_index``) for what each
    operation does. Attributes: :attr:`one_hot` (the straight-through one-hot,
    shape ``self.shape + (K,)``), :attr:`site` (the sample site, set by
    :func:`pyrostruct.relax`).
    """

    _hard: torch.Tensor
    _one_hot: torch.Tensor
    _probe: _Probe
    _scored: torch.Tensor | None

    @staticmethod
    def wrap(
        hard: torch.Tensor,
        one_hot: torch.Tensor,
        probe: _Probe | None = None,
        scored: torch.Tensor | None = None,
    ) -> RelaxedIndex:
        """A relaxed index with value ``hard`` (integer) and straight-through ``one_hot``.

        ``scored`` is a second straight-through one-hot of the same sample, the one
        that :meth:`ConcreteCategorical.log_prob` differentiates (kept apart from
        ``one_hot`` so that the hooks behind :class:`RelaxationWarning` see only the
        model's uses); values derived by moving data around carry both.
        """
        if hard.is_floating_point() or hard.is_complex() or hard.dtype == torch.bool:
            raise TypeError(f"RelaxedIndex: expected an integer tensor, got {hard.dtype}.")
        if one_hot.shape[:-1] != hard.shape:
            raise ValueError(
                f"RelaxedIndex: one_hot of shape {tuple(one_hot.shape)} does not match the "
                f"index shape {tuple(hard.shape)} + (K,)."
            )
        hard = hard.detach()
        out = torch.Tensor._make_subclass(RelaxedIndex, hard, False)
        out._hard = hard
        out._one_hot = one_hot
        out._probe = probe if probe is not None else _Probe()
        out._scored = scored
        return out

    # public read-only views ------------------------------------------------
    @property
    def one_hot(self) -> torch.Tensor:
        """The straight-through one-hot (forward exactly one-hot, backward relaxed)."""
        return self.__dict__["_one_hot"]

    @property
    def site(self) -> str | None:
        """Name of the relaxed sample site this value came from (set by ``relax``)."""
        return self.__dict__["_probe"].site

    def as_plain(self) -> torch.Tensor:
        """The hard index as a plain ``torch.Tensor`` (no gradient path)."""
        return self.__dict__["_hard"]

    @property
    def live(self) -> bool:
        """Whether the value currently carries a gradient path."""
        return torch.is_grad_enabled() and self.__dict__["_one_hot"].requires_grad

    # conversions that leave torch ------------------------------------------
    def _leave(self, what: str):
        if self.live:
            raise RelaxedValueError(_escape_message(self.__dict__["_probe"], what))
        return self.__dict__["_hard"]

    def item(self):
        return self._leave("z.item()").item()

    def tolist(self):
        return self._leave("z.tolist()").tolist()

    def numpy(self, *args, **kwargs):
        return self._leave("z.numpy()").numpy(*args, **kwargs)

    def __array__(self, *args, **kwargs):
        return self._leave("numpy.asarray(z)").__array__(*args, **kwargs)

    def __int__(self):
        return int(self._leave("int(z)"))

    def __float__(self):
        return float(self._leave("float(z)"))

    def __bool__(self):
        return bool(self._leave("bool(z) (an `if` on the value)"))

    def __index__(self):
        return self._leave("operator.index(z) (z used as a Python index)").__index__()

    def __format__(self, spec):
        return self.__dict__["_hard"].__format__(spec)

    def __reduce_ex__(self, proto):
        return self.__dict__["_hard"].__reduce_ex__(proto)

    def __deepcopy__(self, memo):
        return self.__dict__["_hard"].clone()

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not _any_live(args, kwargs):
            return _plain(func, *_unwrap(args), **_unwrap(kwargs))
        handler = _HANDLERS.get(func)
        if handler is not None:
            out = handler(func, args, kwargs)
            if out is not NotImplemented:
                return out
        return _default(func, args, kwargs)


# ------------------------------------------------------------------ helpers


def _walk(obj):
    if isinstance(obj, RelaxedIndex):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _walk(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _walk(item)


def _any_live(args, kwargs) -> bool:
    if not torch.is_grad_enabled():
        return False
    return any(c.__dict__["_one_hot"].requires_grad for c in _walk((args, kwargs)))


def _unwrap(obj, replace=None):
    """Replace each RelaxedIndex in ``obj`` by ``replace(c)`` (default: its hard value)."""
    if isinstance(obj, RelaxedIndex):
        return replace(obj) if replace is not None else obj.__dict__["_hard"]
    if isinstance(obj, tuple):
        return tuple(_unwrap(item, replace) for item in obj)
    if isinstance(obj, list):
        return [_unwrap(item, replace) for item in obj]
    if isinstance(obj, dict):
        return {key: _unwrap(item, replace) for key, item in obj.items()}
    return obj


def _number_of(c: RelaxedIndex) -> torch.Tensor:
    """Straight-through number :math:`\\sum_k k\\,\\hat y_k` (forward: exactly the index)."""
    y = c.__dict__["_one_hot"]
    ks = torch.arange(y.size(-1), dtype=y.dtype, device=y.device)
    return (y * ks).sum(-1)


_OPERATORS = {
    "eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "add": "+",
    "radd": "+", "sub": "-", "rsub": "-", "mul": "*", "rmul": "*", "floordiv": "//",
    "mod": "%", "and": "&", "or": "|", "xor": "^", "invert": "~", "neg": "-",
}  # fmt: skip


def _func_name(func) -> str:
    """A readable name for an op: ``__eq__`` (or ``eq``, as torch 2.2 dispatches ``==``)
    -> ``==``, ``torch.where`` -> ``where``."""
    name = getattr(func, "__name__", None) or repr(func)
    return _OPERATORS.get(name.strip("_"), name)


def _flat_tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _flat_tensors(item)


_INPLACE_DUNDER = {
    "__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__", "__imod__",
    "__ipow__", "__iand__", "__ior__", "__ixor__", "__ilshift__", "__irshift__", "__setitem__",
}  # fmt: skip


def _default(func, args, kwargs):
    """Anything else: compute on the hard values; a floating result is recomputed on
    the straight-through numbers :math:`\\sum_k k \\hat y_k`, so it keeps a gradient."""
    out = _plain(func, *_unwrap(args), **_unwrap(kwargs))
    raw = getattr(func, "__name__", "")
    inplace = raw.endswith("_") and not raw.endswith("__") or raw in _INPLACE_DUNDER
    name = _func_name(func)
    if (
        not inplace
        and isinstance(out, torch.Tensor)
        and (out.is_floating_point() or out.is_complex())
    ):
        try:
            soft = _plain(func, *_unwrap(args, _number_of), **_unwrap(kwargs, _number_of))
        except (RuntimeError, TypeError, IndexError, ValueError):
            soft = None  # the op needs an integer tensor there (bincount, scatter_add, ...)
        if isinstance(soft, torch.Tensor) and soft.shape == out.shape:
            return soft.to(out.dtype)
    if any(True for _ in _flat_tensors(out)):  # a tensor result: the index left the graph
        for c in _walk((args, kwargs)):
            c.__dict__["_probe"].escape(name)
    return out


# ------------------------------------------------------------------ data movement


def _move(func, args, kwargs):
    """Ops that copy elements around (reshape, permute, self-indexing, stack, ...).

    The op is run on the hard values and on *position ids*; each output element
    then takes the one-hot row of the input element it was copied from.
    """
    carriers = list(_walk((args, kwargs)))
    if not carriers:
        return NotImplemented
    num_classes = {c.__dict__["_one_hot"].size(-1) for c in carriers}
    if len(num_classes) != 1:
        return NotImplemented
    # every integer tensor argument of a multi-tensor op must be a carrier (cat of a
    # relaxed index with a plain tensor has no one-hot for the plain part)
    seen: dict[int, int] = {}
    offset = 0
    ids_of: dict[int, torch.Tensor] = {}
    rows, scored_rows = [], []
    for c in carriers:
        if id(c) in seen:
            continue
        hard = c.__dict__["_hard"]
        seen[id(c)] = offset
        ids = torch.arange(offset, offset + hard.numel(), device=hard.device)
        ids_of[id(c)] = ids.view(hard.shape)
        rows.append(c.__dict__["_one_hot"].reshape(-1, c.__dict__["_one_hot"].size(-1)))
        scored = c.__dict__.get("_scored")
        scored_rows.append(None if scored is None else scored.reshape(rows[-1].shape))
        offset += hard.numel()
    if isinstance(args, tuple) and args and isinstance(args[0], (tuple, list)):
        if any(type(t) is torch.Tensor for t in args[0]):
            return NotImplemented
    hard_out = _plain(func, *_unwrap(args), **_unwrap(kwargs))
    ids_out = _plain(
        func, *_unwrap(args, lambda c: ids_of[id(c)]), **_unwrap(kwargs, lambda c: ids_of[id(c)])
    )
    table = rows[0] if len(rows) == 1 else torch.cat(rows, 0)
    scored_table = None
    if all(t is not None for t in scored_rows):
        scored_table = scored_rows[0] if len(rows) == 1 else torch.cat(scored_rows, 0)
    probe = carriers[0].__dict__["_probe"]

    def rewrap(h, ids):
        if not isinstance(h, torch.Tensor):
            return h
        if h.is_floating_point() or h.dtype == torch.bool or h.shape != ids.shape:
            return h
        flat = ids.reshape(-1)
        scored = None if scored_table is None else scored_table[flat].reshape(ids.shape + (-1,))
        return RelaxedIndex.wrap(h, table[flat].reshape(ids.shape + (-1,)), probe, scored)

    if isinstance(hard_out, (tuple, list)):
        return type(hard_out)(rewrap(h, i) for h, i in zip(hard_out, ids_out))
    return rewrap(hard_out, ids_out)


def _convert(func, args, kwargs):
    """``to``/``type``/``long``/``float``/...: integer targets stay relaxed indices,
    floating targets become the straight-through number."""
    self = args[0]
    if not isinstance(self, RelaxedIndex):
        return NotImplemented
    hard_out = _plain(func, *_unwrap(args), **_unwrap(kwargs))
    if not isinstance(hard_out, torch.Tensor):
        return hard_out  # e.g. z.type() -> "torch.LongTensor"
    y = self.__dict__["_one_hot"]
    if hard_out.is_floating_point() or hard_out.is_complex():
        return _number_of(self).to(device=hard_out.device, dtype=hard_out.dtype)
    if hard_out.dtype == torch.bool:
        self.__dict__["_probe"].escape(_func_name(func))
        return hard_out
    scored = self.__dict__.get("_scored")
    if scored is not None:
        scored = scored.to(hard_out.device)
    return RelaxedIndex.wrap(hard_out, y.to(hard_out.device), self.__dict__["_probe"], scored)


def _detach(func, args, kwargs):
    for c in _walk(args):
        c.__dict__["_probe"].escape("detach")
    return _plain(func, *_unwrap(args), **_unwrap(kwargs))


# ------------------------------------------------------------------ table lookups


def _lookup(table: torch.Tensor, index, hard_result: torch.Tensor) -> torch.Tensor:
    """``table[index]`` with a straight-through gradient path for each relaxed index in it."""
    if not (table.is_floating_point() or table.is_complex()):
        for c in _walk(index):
            c.__dict__["_probe"].escape("indexing an integer table")
        return hard_result
    if not isinstance(index, tuple):
        index = (index,)
    hard_index = _unwrap(index)
    has_ellipsis = any(item is Ellipsis for item in index)
    result = hard_result
    path = None
    for position, c in enumerate(index):
        if not isinstance(c, RelaxedIndex) or not c.live:
            continue
        term = straight_through_term(
            table, hard_index, position, c.__dict__["_one_hot"], c.__dict__["_hard"],
            has_ellipsis, result.shape,
        )  # fmt: skip
        path = term if path is None else path + term
    for item in index:
        if not isinstance(item, RelaxedIndex):  # e.g. a Python list holding relaxed indices
            for c in _walk(item):
                c.__dict__["_probe"].escape("indexing inside a list (use a tuple or torch.stack)")
    return result if path is None else result + path


def _getitem(func, args, kwargs):
    table, index = args[0], args[1]
    if any(True for _ in _walk(index)):
        plain_table = table.__dict__["_hard"] if isinstance(table, RelaxedIndex) else table
        hard_result = _plain(func, plain_table, _unwrap(index))
        return _lookup(plain_table, index, hard_result)
    return _move(func, args, kwargs)


def _dim_lookup(func, args, kwargs, plain, what):
    """The common start of ``gather`` and ``index_select`` along ``dim`` with a relaxed index:
    ``(None, answer)`` when that is all (not ours, a relaxed table, an integer table), else
    ``((table, d, index, hard), hard_result)`` for the caller to add the gradient path to."""
    bound = _bind(args, kwargs, ("input", "dim", "index"))
    if bound is None:
        return None, NotImplemented
    table, dim, index = bound
    if isinstance(table, RelaxedIndex):
        if isinstance(index, RelaxedIndex):
            return None, NotImplemented
        return None, _move(func, args, kwargs)
    if not isinstance(index, RelaxedIndex):
        return None, NotImplemented
    hard = index.__dict__["_hard"]
    result = _plain(plain, table, dim, hard)
    if not table.is_floating_point():
        index.__dict__["_probe"].escape(f"{what} from an integer table")
        return None, result
    return (table, dim % table.dim(), index, hard), result


def _gather(func, args, kwargs):
    parts, result = _dim_lookup(func, args, kwargs, torch.gather, "gather")
    if parts is None:
        return result
    table, d, index, hard = parts
    y = index.__dict__["_one_hot"]
    num = min(y.size(-1), table.size(d))
    expanded = table.detach().unsqueeze(-1).expand(*table.shape, num)
    every = torch.arange(num, device=hard.device).expand(*hard.shape, num)
    values = _plain(torch.gather, expanded, d, every)
    values = torch.where(torch.isfinite(values), values, torch.zeros_like(values))
    delta = (y - y.detach())[..., :num].to(values.dtype)
    return result + (delta * values).sum(-1)


def _take_along_dim(func, args, kwargs):
    bound = _bind(args, kwargs, ("input", "indices", "dim"), defaults={"dim": None})
    if bound is None:
        return NotImplemented
    table, index, dim = bound
    if (
        dim is None
        or not isinstance(index, RelaxedIndex)
        or isinstance(table, RelaxedIndex)
        or table.dim() != index.dim()
    ):
        return NotImplemented
    d = dim % table.dim()
    # take_along_dim = gather after broadcasting every dimension but d
    others = torch.broadcast_shapes(
        tuple(1 if j == d else n for j, n in enumerate(table.shape)),
        tuple(1 if j == d else n for j, n in enumerate(index.shape)),
    )
    table = table.expand(*(table.size(d) if j == d else n for j, n in enumerate(others)))
    index = index.expand(*(index.size(d) if j == d else n for j, n in enumerate(others)))
    return _gather(torch.gather, (table, d, index), {})


def _index_select(func, args, kwargs):
    parts, result = _dim_lookup(func, args, kwargs, torch.index_select, "index_select")
    if parts is None:
        return result
    table, d, index, _ = parts
    y = index.__dict__["_one_hot"].reshape(-1, index.__dict__["_one_hot"].size(-1))
    num = min(y.size(-1), table.size(d))
    values = table.detach().movedim(d, -1)[..., :num]
    values = torch.where(torch.isfinite(values), values, torch.zeros_like(values))
    delta = (y - y.detach())[:, :num].to(values.dtype)
    term = (values.unsqueeze(-2) * delta).sum(-1).movedim(-1, d)
    return result + term


def _embedding(func, args, kwargs):
    bound = _bind(args, kwargs, ("input", "weight"))
    if bound is None:
        return NotImplemented
    index, weight = bound
    extra = dict(kwargs)
    extra.pop("input", None)
    extra.pop("weight", None)
    if len(args) > 2 or any(v not in (None, False, 2.0) for v in extra.values()):
        return NotImplemented  # padding_idx / max_norm / sparse: not straight-through
    if not isinstance(index, RelaxedIndex) or isinstance(weight, RelaxedIndex):
        return NotImplemented
    hard_result = _plain(F.embedding, index.__dict__["_hard"], weight)
    return _lookup(weight, (index,), hard_result)


def _one_hot(func, args, kwargs):
    bound = _bind(args, kwargs, ("input", "num_classes"), defaults={"num_classes": -1})
    if bound is None:
        return NotImplemented
    index, num_classes = bound
    if not isinstance(index, RelaxedIndex):
        return NotImplemented
    hard = index.__dict__["_hard"]
    plain = _plain(F.one_hot, hard, num_classes)  # raises exactly as torch does
    y = index.__dict__["_one_hot"]
    width = plain.size(-1)
    if width <= y.size(-1):
        return y[..., :width]
    return F.pad(y, (0, width - y.size(-1)))


def _bind(args, kwargs, names, defaults=None):
    values = dict(defaults or {})
    for name, value in zip(names, args):
        values[name] = value
    for name in names:
        if name in kwargs:
            values[name] = kwargs[name]
    if any(name not in values for name in names):
        return None
    return tuple(values[name] for name in names)


# ------------------------------------------------------------------ dispatch table

_MOVE = [
    "reshape", "view", "view_as", "reshape_as", "flatten", "unflatten", "ravel", "squeeze",
    "unsqueeze", "expand", "expand_as", "broadcast_to", "permute", "transpose", "swapaxes",
    "swapdims", "movedim", "moveaxis", "t", "flip", "roll", "repeat", "tile", "narrow",
    "select", "unbind", "split", "chunk", "tensor_split", "clone", "contiguous", "take",
    "repeat_interleave", "atleast_1d", "atleast_2d", "atleast_3d", "stack", "cat", "concat",
    "concatenate",
]  # fmt: skip
_CONVERT = [
    "to", "type", "long", "int", "short", "char", "byte", "float", "double", "half",
    "bfloat16", "cpu", "cuda", "type_as", "bool",
]  # fmt: skip


def _build_handlers():
    handlers: dict[Any, Any] = {}

    def add(names, handler):
        for name in names:
            for owner in (torch.Tensor, torch):
                fn = getattr(owner, name, None)
                if fn is not None:
                    handlers[fn] = handler

    add(_MOVE, _move)
    add(_CONVERT, _convert)
    add(["detach"], _detach)
    add(["gather"], _gather)
    add(["index_select"], _index_select)
    add(["take_along_dim"], _take_along_dim)
    handlers[torch.Tensor.__getitem__] = _getitem
    handlers[torch.Tensor.T.__get__] = _move
    handlers[torch.Tensor.mT.__get__] = _move
    handlers[F.embedding] = _embedding
    handlers[torch.embedding] = lambda func, args, kwargs: _embedding(
        F.embedding, (args[1], args[0]) + tuple(args[2:]), kwargs
    )
    handlers[F.one_hot] = _one_hot
    return handlers


_HANDLERS = _build_handlers()
