"""Background knowledge for causal discovery: forbidden and required edges, temporal tiers.

:class:`Knowledge` holds what the user knows before seeing the data, by node name
or index; :meth:`Knowledge.resolve` checks it against the data's nodes and turns
it into three ``(d, d)`` boolean matrices (:class:`KnowledgeMasks`):

- ``forbidden[i, j]``: the edge ``i -> j`` is in no DAG (given, implied by the
  tiers, or within a tier marked forbidden-within);
- ``required[i, j]``: the edge ``i -> j`` is in every DAG;
- ``precedes[i, j]``: ``i`` comes before ``j`` in every causal order (``i`` in an
  earlier tier than ``j``, or ``i -> j`` required).

The order-then-edges posterior of :func:`~pyrostruct.causal.discover` enforces
them exactly: orders are drawn from a Plackett-Luce distribution restricted to
the linear extensions of ``precedes``
(:class:`~pyrostruct.distributions.PartialOrderPlackettLuce`), a forbidden
edge has probability 0 and a required one probability 1 given any such order.
So every drawn DAG, ``edge_probs`` and the consensus graph obey the knowledge.

Semantics follow Tetrad's (the knowledge of its searches): a variable in tier
``k`` cannot cause one in an earlier tier; variables in no tier are
unconstrained. Here tiers are orders, not only forbidden edges: a tier-2
variable cannot reach a tier-1 one through an untiered variable either.

Contradictions are refused with an :class:`~pyrostruct.errors.InputError`
naming them: an edge both forbidden and required, a required edge against the
tiers or within a forbidden-within tier, a node in two tiers, and a cycle of
required edges and tiers.

Two file formats (:func:`read_knowledge`):

- Tetrad's knowledge file::

      /knowledge
      addtemporal
      1 age sex
      2* smoking         <- "*": no edges within this tier
      3 cancer
      forbiddirect
      cancer smoking
      requiredirect
      smoking cancer

  (a tier number followed by ``-`` means the tier can cause only the next one,
  as in Tetrad);
- a CSV with columns ``cause,effect,kind``, kind ``forbidden`` or ``required``.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from pyrostruct.causal.equivalence import _meek_closure
from pyrostruct.distributions import PartialOrderPlackettLuce
from pyrostruct.errors import InputError
from pyrostruct.graph import is_acyclic

__all__ = ["Knowledge", "KnowledgeMasks", "as_knowledge", "orient_by_knowledge", "read_knowledge"]


@dataclasses.dataclass(frozen=True)
class KnowledgeMasks:
    """:class:`Knowledge` resolved against ``d`` nodes: ``(d, d)`` boolean matrices.

    :ivar numpy.ndarray forbidden: ``forbidden[i, j]``: no edge ``i -> j``.
    :ivar numpy.ndarray required: ``required[i, j]``: the edge ``i -> j`` always.
    :ivar numpy.ndarray precedes: ``precedes[i, j]``: ``i`` before ``j`` in every order
        (not closed transitively).
    """

    forbidden: np.ndarray
    required: np.ndarray
    precedes: np.ndarray

    @property
    def num_nodes(self) -> int:
        return self.forbidden.shape[0]

    @property
    def constrains_orders(self) -> bool:
        return bool(self.precedes.any())

    @property
    def free(self) -> np.ndarray:
        """``(d, d)``: pairs whose edge the data decide (neither forbidden nor required,
        off the diagonal)."""
        return ~(self.forbidden | self.required | np.eye(self.num_nodes, dtype=bool))

    def admits(self, dags: np.ndarray) -> np.ndarray:
        """Which DAGs ``(..., d, d)`` obey the knowledge: no forbidden edge, every required
        one, and some topological order that keeps ``precedes`` (the DAG's edges together
        with ``precedes`` have no cycle). Returns a boolean array of the batch shape."""
        a = np.asarray(dags, dtype=bool)
        ok = ~(a & self.forbidden).any((-1, -2)) & ~(self.required & ~a).any((-1, -2))
        if self.constrains_orders:
            ok = ok & is_acyclic(torch.as_tensor(a | self.precedes)).numpy()
        return ok

    def sample_dags(self, scores, edge_logits, n: int) -> np.ndarray:
        """``n`` DAGs ``(n, d, d)`` (boolean) of the order-then-edges distribution with node
        ``scores`` and ``edge_logits`` under this knowledge: orders from
        :class:`~pyrostruct.distributions.PartialOrderPlackettLuce`, forward edges with
        probability ``sigmoid(l)``, forbidden ones never, required ones always. Draws from
        torch's global generator."""
        scores = torch.as_tensor(np.asarray(scores), dtype=torch.float64)
        logits = torch.as_tensor(np.asarray(edge_logits), dtype=torch.float64)
        order = PartialOrderPlackettLuce(scores, self.precedes).sample_order((n,))
        rank = torch.argsort(order, dim=-1)
        forward = rank.unsqueeze(-1) < rank.unsqueeze(-2)
        probs = torch.sigmoid(logits) * torch.as_tensor(self.free) + torch.as_tensor(self.required)
        return (forward & (torch.rand(forward.shape, dtype=torch.float64) < probs)).numpy()

    def to_dict(self) -> dict:
        """JSON record: the index pairs of each matrix (:meth:`from_dict` reads it back)."""
        return {
            "num_nodes": self.num_nodes,
            **{k: np.argwhere(getattr(self, k)).tolist() for k in _MASKS},
        }

    @classmethod
    def from_dict(cls, data: dict) -> KnowledgeMasks:
        """The masks of a :meth:`to_dict` record."""
        d = int(data["num_nodes"])
        masks = {}
        for k in _MASKS:
            m = np.zeros((d, d), dtype=bool)
            pairs = np.asarray(data[k], dtype=np.int64).reshape(-1, 2)
            m[pairs[:, 0], pairs[:, 1]] = True
            masks[k] = m
        return cls(**masks)

    def order_admits(self, order: Sequence[int]) -> bool:
        """Whether the order (node at each position) keeps ``precedes``."""
        rank = np.empty(self.num_nodes, dtype=np.int64)
        rank[np.asarray(order)] = np.arange(self.num_nodes)
        i, j = np.nonzero(self.precedes)
        return bool((rank[i] < rank[j]).all())


_MASKS = ("forbidden", "required", "precedes")


def orient_by_knowledge(graph: np.ndarray, knowledge: KnowledgeMasks) -> np.ndarray:
    """A CPDAG (or interventional essential graph) ``(d, d)`` with the undirected edges
    that the knowledge orients directed, closed under Meek's rules R1-R4 (Meek 1995): an
    undirected ``i - j`` becomes ``i -> j`` when ``j -> i`` is forbidden, ``i -> j`` is
    required or ``i`` must precede ``j``. Sound (every orientation holds in every member
    of the class that obeys the knowledge) and, for knowledge about the class's own
    edges, complete (Meek's theorem; checked against every member at d = 5 in the
    tests); precedence between nodes that are not adjacent orients only what it orients
    through such edges."""
    g = np.asarray(graph) != 0
    undirected = g & g.T
    directed = g & ~g.T
    known = knowledge.forbidden.T | knowledge.required | knowledge.precedes  # i -> j
    new = undirected & known & ~known.T
    directed |= new
    undirected &= ~(new | new.T)
    directed, undirected = _meek_closure(directed, undirected, rule4=True)
    return (directed | undirected).astype(np.asarray(graph).dtype)


def _find_cycle(adj: np.ndarray) -> list[int]:
    """One directed cycle of a boolean adjacency that has one (nodes in order)."""
    state = np.zeros(len(adj), dtype=np.int8)  # 0 new, 1 on the path, 2 done
    path: list[int] = []

    def visit(v: int) -> list[int] | None:
        state[v] = 1
        path.append(v)
        for w in np.flatnonzero(adj[v]).tolist():
            if state[w] == 1:
                return path[path.index(w) :]
            if state[w] == 0:
                found = visit(w)
                if found:
                    return found
        state[v] = 2
        path.pop()
        return None

    for v in range(len(adj)):
        if state[v] == 0:
            found = visit(v)
            if found:
                return found
    return []


@dataclasses.dataclass(frozen=True)
class Knowledge:
    """What is known about the causal graph before the data: enforced exactly by
    :func:`~pyrostruct.causal.discover` (see the module docstring).

    :param forbidden: edges ``(cause, effect)`` that are absent, by node name or index (an
        integer is an index, or the name of a column named by that number when it is not
        a valid index).
    :type forbidden: iterable of pairs
    :param required: edges ``(cause, effect)`` that are present.
    :type required: iterable of pairs
    :param tiers: temporal tiers, earliest first, each a list of nodes: a node cannot
        cause (directly or through others) a node of an earlier tier. Nodes in no
        tier are unconstrained.
    :type tiers: sequence of sequences
    :param forbid_within_tiers: no edges between two nodes of one tier: ``True`` for
        every tier, or the indices (0-based) of the tiers it applies to.
    :type forbid_within_tiers: bool or iterable of int
    :param only_next_tier: indices of tiers whose nodes can cause only the next tier's
        (no edges to later tiers; Tetrad's ``-`` marker).
    :type only_next_tier: iterable of int

    Example::

        >>> k = Knowledge(tiers=[["age"], ["smoking"], ["cancer"]],
        ...               forbidden=[("age", "cancer")])
        >>> m = k.resolve(["age", "smoking", "cancer"])
        >>> m.forbidden.astype(int)
        array([[0, 0, 1],
               [1, 0, 0],
               [1, 1, 0]])
    """

    forbidden: tuple = ()
    required: tuple = ()
    tiers: tuple = ()
    forbid_within_tiers: Any = False
    only_next_tier: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "forbidden", _pairs(self.forbidden, "forbidden"))
        object.__setattr__(self, "required", _pairs(self.required, "required"))
        object.__setattr__(self, "tiers", _tiers(self.tiers))
        within = self.forbid_within_tiers
        if isinstance(within, (bool, np.bool_)):
            within = tuple(range(len(self.tiers))) if within else ()
        object.__setattr__(
            self,
            "forbid_within_tiers",
            _tier_indices(within, len(self.tiers), "forbid_within_tiers"),
        )
        object.__setattr__(
            self,
            "only_next_tier",
            _tier_indices(self.only_next_tier, len(self.tiers), "only_next_tier"),
        )

    def __bool__(self) -> bool:
        return bool(self.forbidden or self.required or self.tiers)

    def to_dict(self) -> dict:
        """JSON-ready record (names or indices as given); :meth:`from_dict` reads it back."""
        return {
            "forbidden": [list(p) for p in self.forbidden],
            "required": [list(p) for p in self.required],
            "tiers": [list(t) for t in self.tiers],
            "forbid_within_tiers": list(self.forbid_within_tiers),
            "only_next_tier": list(self.only_next_tier),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Knowledge:
        """The :class:`Knowledge` of a :meth:`to_dict` record."""
        if not isinstance(data, dict):
            raise InputError(f"knowledge must be a dict, got {type(data).__name__}")
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise InputError(f"unknown knowledge keys: {sorted(unknown)}")
        return cls(**{k: v for k, v in data.items()})

    def resolve(self, names: Sequence) -> KnowledgeMasks:
        """Check the knowledge against the nodes ``names`` (a node is referred to by its
        name or its index) and return its :class:`KnowledgeMasks`.

        :raises InputError: an unknown node, a self-loop, or contradictory knowledge
            (the message names the conflict).
        """
        names = list(names)
        d = len(names)
        index = {str(n): i for i, n in enumerate(names)}

        def node(ref, what: str) -> int:
            if isinstance(ref, (int, np.integer)) and not isinstance(ref, (bool, np.bool_)):
                if 0 <= int(ref) < d:
                    return int(ref)
                if str(ref) in index:  # a column named by a number, such as a year
                    return index[str(ref)]
                raise InputError(f"knowledge: {what} refers to node index {ref}, not in 0..{d - 1}")
            if str(ref) in index:
                return index[str(ref)]
            raise InputError(f"knowledge: {what} refers to an unknown node {ref!r}")

        def label(i: int) -> str:
            return str(names[i])

        forbidden = np.zeros((d, d), dtype=bool)
        required = np.zeros((d, d), dtype=bool)
        precedes = np.zeros((d, d), dtype=bool)
        for kind, pairs, out in (("forbidden", self.forbidden, forbidden),
                                 ("required", self.required, required)):  # fmt: skip
            for cause, effect in pairs:
                i, j = node(cause, f"a {kind} edge"), node(effect, f"a {kind} edge")
                if i == j:
                    raise InputError(
                        f"knowledge: {kind} edge {label(i)} -> {label(i)} is a self-loop"
                    )
                out[i, j] = True
        both = forbidden & required
        if both.any():
            i, j = np.argwhere(both)[0]
            raise InputError(
                f"knowledge: the edge {label(i)} -> {label(j)} is both forbidden and required"
            )
        tier_of = np.full(d, -1)
        for t, members in enumerate(self.tiers):
            for ref in members:
                i = node(ref, f"tier {t + 1}")
                if tier_of[i] >= 0:
                    raise InputError(
                        f"knowledge: node {label(i)} is in tier {tier_of[i] + 1} and tier {t + 1}"
                    )
                tier_of[i] = t
        tiered = tier_of >= 0
        earlier = tiered[:, None] & tiered[None, :] & (tier_of[:, None] < tier_of[None, :])
        same = tiered[:, None] & tiered[None, :] & (tier_of[:, None] == tier_of[None, :])
        np.fill_diagonal(same, False)
        within = np.isin(tier_of, list(self.forbid_within_tiers)) & tiered
        beyond_next = np.isin(tier_of, list(self.only_next_tier))[:, None] & earlier
        beyond_next &= tier_of[None, :] > tier_of[:, None] + 1
        implied = earlier.T | (same & within[:, None]) | beyond_next
        against = required & implied
        if against.any():
            i, j = np.argwhere(against)[0]
            ti, tj = tier_of[i] + 1, tier_of[j] + 1
            why = (
                f"within tier {ti}, which forbids edges within it" if ti == tj
                else f"from tier {ti} to tier {tj}, which the tiers forbid"
            )  # fmt: skip
            raise InputError(f"knowledge: the required edge {label(i)} -> {label(j)} goes {why}")
        forbidden |= implied
        precedes = earlier | required
        if not bool(is_acyclic(torch.as_tensor(precedes))):
            cycle = _find_cycle(precedes)
            path = " -> ".join(label(v) for v in cycle + cycle[:1])
            raise InputError(
                f"knowledge: required edges and tiers form a cycle: {path} "
                "(each step is a required edge or an earlier tier)"
            )
        return KnowledgeMasks(forbidden=forbidden, required=required, precedes=precedes)


def _pairs(pairs, what: str) -> tuple:
    if isinstance(pairs, (str, bytes)):
        raise InputError(
            f"knowledge: {what} must be a list of (cause, effect) pairs, got {pairs!r}"
        )
    try:
        items = list(pairs)
    except TypeError:
        raise InputError(
            f"knowledge: {what} must be a list of (cause, effect) pairs, got {pairs!r}"
        ) from None
    out = []
    for p in items:
        pair = None if isinstance(p, (str, bytes)) or not isinstance(p, Iterable) else list(p)
        if pair is None or len(pair) != 2:
            raise InputError(
                f"knowledge: each {what} edge must be a (cause, effect) pair, got {p!r}"
            )
        cause, effect = pair
        out.append((_ref(cause), _ref(effect)))
    return tuple(out)


def _ref(value):
    """A node reference as a plain int or str."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, str):
        return value
    raise InputError(f"knowledge: a node must be a name or an index, got {value!r}")


def _tiers(tiers) -> tuple:
    if isinstance(tiers, (str, bytes)):
        raise InputError(f"knowledge: tiers must be a list of lists of nodes, got {tiers!r}")
    try:
        items = list(tiers)
    except TypeError:
        raise InputError(
            f"knowledge: tiers must be a list of lists of nodes, got {tiers!r}"
        ) from None
    out = []
    for t in items:
        if isinstance(t, (str, bytes)) or not isinstance(t, Iterable):
            raise InputError(f"knowledge: each tier must be a list of nodes, got {t!r}")
        out.append(tuple(_ref(v) for v in t))
    return tuple(out)


def _tier_indices(values, num_tiers: int, what: str) -> tuple:
    try:
        items = sorted({int(v) for v in values})
    except (TypeError, ValueError):
        raise InputError(
            f"knowledge: {what} must be True/False or tier indices, got {values!r}"
        ) from None
    bad = [v for v in items if not 0 <= v < num_tiers]
    if bad:
        raise InputError(
            f"knowledge: {what} names tier index {bad[0]}, but there are {num_tiers} tiers"
        )
    return tuple(items)


def as_knowledge(value) -> Knowledge:
    """``value`` as a :class:`Knowledge`: one already, a dict of its fields, or the path of a
    knowledge file (:func:`read_knowledge`)."""
    if isinstance(value, Knowledge):
        return value
    if isinstance(value, dict):
        return Knowledge.from_dict(value)
    if isinstance(value, (str, os.PathLike)):
        return read_knowledge(value)
    raise InputError(
        "knowledge must be a Knowledge, a dict of its fields or the path of a knowledge "
        f"file, got {type(value).__name__}"
    )


def read_knowledge(path: str | os.PathLike) -> Knowledge:
    """Read background knowledge from Tetrad's knowledge file or a ``cause,effect,kind`` CSV
    (see the module docstring); the format is told from the content (a Tetrad file starts
    with ``/knowledge`` or one of its section keywords).

    :raises InputError: an unreadable file or a malformed line (named by its number).
    """
    try:
        with open(path, encoding="utf-8-sig") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read knowledge file {os.fspath(path)!r}: {exc}") from None
    lines = [line.strip() for line in text.splitlines()]
    first = next((line for line in lines if line and not _comment(line)), "")
    if first.lower().startswith("/knowledge") or first.lower() in _SECTIONS:
        return _read_tetrad(lines, os.fspath(path))
    return _read_csv(text, os.fspath(path))


_SECTIONS = ("addtemporal", "forbiddirect", "requiredirect", "forbiddengroup", "requiredgroup")


def _comment(line: str) -> bool:
    return line.startswith("#") or line.startswith("//")


def _read_tetrad(lines: list[str], path: str) -> Knowledge:
    section = None
    tiers: dict[int, list[str]] = {}
    within, next_only = set(), set()
    forbidden, required = [], []
    for number, line in enumerate(lines, 1):
        if not line or _comment(line) or line.lower().startswith("/knowledge"):
            continue
        key = line.lower()
        if key in _SECTIONS:
            if key in ("forbiddengroup", "requiredgroup"):
                raise InputError(
                    f"{path}, line {number}: Tetrad's '{line}' section is not supported "
                    "(list its edges under forbiddirect / requiredirect)"
                )
            section = key
            continue
        fields = line.split()
        if section is None:
            raise InputError(f"{path}, line {number}: {line!r} comes before any section "
                             "(addtemporal, forbiddirect or requiredirect)")  # fmt: skip
        if section == "addtemporal":
            head, members = fields[0], fields[1:]
            marker = head.lstrip("0123456789")
            digits = head[: len(head) - len(marker)]
            if not digits or marker not in ("", "*", "-", "*-", "-*"):
                raise InputError(f"{path}, line {number}: a tier line starts with the tier number "
                                 f"(optionally followed by * or -), got {head!r}")  # fmt: skip
            t = int(digits)
            if t in tiers:
                raise InputError(f"{path}, line {number}: tier {t} is listed twice")
            tiers[t] = members
            if "*" in marker:
                within.add(t)
            if "-" in marker:
                next_only.add(t)
        else:
            if len(fields) != 2:
                raise InputError(
                    f"{path}, line {number}: an edge line has two node names, got {line!r}"
                )
            (forbidden if section == "forbiddirect" else required).append(tuple(fields))
    ordered = sorted(tiers)
    position = {t: k for k, t in enumerate(ordered)}
    return Knowledge(
        forbidden=forbidden,
        required=required,
        tiers=[tiers[t] for t in ordered],
        forbid_within_tiers=[position[t] for t in within],
        only_next_tier=[position[t] for t in next_only],
    )


def _read_csv(text: str, path: str) -> Knowledge:
    reader = csv.reader(text.splitlines())
    numbered = [(reader.line_num, r) for r in reader if any(c.strip() for c in r)]  # blank: skip
    rows = [r for _, r in numbered]
    if not rows:
        raise InputError(f"{path}: the knowledge file is empty")
    header = [c.strip().lower() for c in rows[0]]
    if header != ["cause", "effect", "kind"]:
        raise InputError(
            f"{path}: a knowledge CSV has the header cause,effect,kind, got {','.join(rows[0])!r} "
            "(or use Tetrad's format, starting with /knowledge)"
        )
    forbidden, required = [], []
    for number, row in numbered[1:]:  # the file's own line numbers
        if len(row) != 3:
            raise InputError(f"{path}, line {number}: expected cause,effect,kind, got {row!r}")
        cause, effect, kind = (c.strip() for c in row)
        kind = kind.lower()
        if kind not in ("forbidden", "required"):
            raise InputError(
                f"{path}, line {number}: kind must be 'forbidden' or 'required', got {kind!r}"
            )
        (forbidden if kind == "forbidden" else required).append((cause, effect))
    return Knowledge(forbidden=forbidden, required=required)
