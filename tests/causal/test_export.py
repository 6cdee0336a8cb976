"""CausalResult exports (issue 20, part 4): the CPDAG of the consensus graph, and the
node-link JSON, GraphML, DOT and CSV files and causal-learn's GeneralGraph, each read
back to the same graph."""

import json
import os
import re
import stat

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from pyrostruct.causal import datasets, discover, load_result
from pyrostruct.causal.equivalence import interventional_essential_graph
from pyrostruct.causal.export import output_format
from pyrostruct.causal.result import CausalResult
from pyrostruct.errors import InputError
from pyrostruct.graph import node_link_graph

# Names a reader could mangle: spaces, unicode, quotes, a backslash, a comma, DOT keywords.
NAMES = ["a b", "ünïcode β", 'say "hi"', "back\\slash", "x,y", "node", "iso lated"]


def _result(probs, names=None, *, targets=(), weights=None, metadata=None, equivalence=False):
    probs = np.asarray(probs, dtype=np.float64)
    d = len(probs)
    return CausalResult(
        names=list(names or [f"X{i}" for i in range(d)]),
        edge_probs=probs,
        edge_probs_stderr=np.zeros((d, d)),
        weights=probs * 1.5 - 0.25 if weights is None else np.asarray(weights, dtype=np.float64),
        scores=np.zeros(d),
        edge_logits=np.zeros((d, d)),
        elbo_trace=np.array([-3.0, -2.0]),
        metadata={"seed": 0, "sem": "linear", "steps": 2} if metadata is None else metadata,
        equivalence_class=equivalence,
        intervention_targets=[list(t) for t in targets],
    )


def _from_edges(d, edges, reverse=0.04):
    """Edge probabilities ``(d, d)``: ``P(i -> j) = p`` for each ``(i, j, p)``, and a small
    distinct probability the other way round."""
    probs = np.zeros((d, d))
    for k, (i, j, p) in enumerate(edges):
        probs[i, j], probs[j, i] = p, reverse + 0.01 * k
    return probs


def _mixed():
    """A consensus DAG whose CPDAG has both kinds of edge: the v-structure a->c<-b and
    c->d (Meek's rule 1) are compelled, e - a is reversible; one isolated node."""
    a, e, b, c, d, iso = 0, 1, 2, 3, 4, 6
    edges = [(a, c, 0.93), (b, c, 0.81), (c, d, 0.77), (e, a, 0.55), (d, 5, 0.0)]
    probs = _from_edges(7, edges[:4])
    probs[iso, b] = 0.12  # a pair with a probability but no edge
    return _result(probs, NAMES, equivalence=True)


def _edges(graph):
    """``{(cause, effect): (probability, weight, undirected)}`` of a graph."""
    return {
        (u, v): (a["probability"], a["weight"], a.get("undirected"))
        for u, v, a in graph.edges(data=True)
    }


def _assert_same_graph(got, expected):
    assert list(got.nodes) == list(expected.nodes)
    assert _edges(got) == _edges(expected)


# -- the CPDAG ----------------------------------------------------------------------


def _undirected(graph):
    return sorted((u, v) for u, v, x in graph.edges(data="undirected") if x)


def _directed(graph):
    return sorted((u, v) for u, v, x in graph.edges(data="undirected") if not x)


def test_cpdag_of_a_chain_has_every_edge_undirected():
    result = _result(_from_edges(3, [(0, 1, 0.9), (1, 2, 0.8)]), ["X", "Y", "Z"])
    assert all("undirected" not in a for _, _, a in result.graph.edges(data=True))
    assert sorted(result.graph.edges) == [("X", "Y"), ("Y", "Z")]
    cpdag = result.to_networkx(cpdag=True)
    assert _directed(cpdag) == []
    assert _undirected(cpdag) == [("X", "Y"), ("Y", "X"), ("Y", "Z"), ("Z", "Y")]
    assert cpdag.graph["cpdag"] is True and "cpdag" not in result.graph.graph
    # each direction keeps its own probability and weight
    assert cpdag.edges["Y", "X"]["probability"] == result.edge_probs[1, 0]
    assert cpdag.edges["Y", "X"]["weight"] == result.weights[1, 0]


def test_cpdag_of_a_collider_keeps_both_edges_directed():
    result = _result(_from_edges(3, [(0, 2, 0.9), (1, 2, 0.8)]), ["X", "Y", "Z"])
    cpdag = result.to_networkx(cpdag=True)
    assert _undirected(cpdag) == []
    assert _directed(cpdag) == [("X", "Z"), ("Y", "Z")]


@pytest.mark.parametrize(
    "targets, directed, undirected",
    [
        ([[1]], [("X", "Y"), ("Y", "Z")], []),  # both edges have one end in {Y}
        ([[2]], [("Y", "Z")], [("X", "Y"), ("Y", "X")]),  # only Y - Z is cut
        ([[0]], [("X", "Y"), ("Y", "Z")], []),  # X -> Y cut, then Meek's rule 1: Y -> Z
        ([[0, 1]], [("Y", "Z")], [("X", "Y"), ("Y", "X")]),  # only Y - Z is cut
    ],
)
def test_cpdag_with_intervention_targets_is_the_interventional_essential_graph(
    targets, directed, undirected
):
    result = _result(_from_edges(3, [(0, 1, 0.9), (1, 2, 0.8)]), ["X", "Y", "Z"], targets=targets)
    cpdag = result.to_networkx(cpdag=True)
    assert _directed(cpdag) == directed and _undirected(cpdag) == undirected
    expected = interventional_essential_graph(result.adjacency, targets)
    assert np.array_equal(nx.to_numpy_array(cpdag, nodelist=result.names, weight=None), expected)


def test_cpdag_of_a_fitted_result_uses_its_intervention_targets():
    ds = datasets.make_dataset(d=4, n=120, seed=0, interventions=[[1]])
    result = discover(ds.data, interventions=ds.intervention_column(), steps=50, progress=False)
    assert result.intervention_targets == [[1]]
    cpdag = result.to_networkx(cpdag=True)
    expected = interventional_essential_graph(result.adjacency, result.intervention_targets)
    assert np.array_equal(nx.to_numpy_array(cpdag, nodelist=result.names, weight=None), expected)
    for u, v, attrs in cpdag.edges(data=True):
        i, j = result.names.index(u), result.names.index(v)
        assert attrs["probability"] == result.edge_probs[i, j]
        assert attrs["undirected"] == bool(expected[j, i])


# -- files read back ----------------------------------------------------------------


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return node_link_graph(json.load(f))


def _read_graphml(path):
    return nx.read_graphml(path)


def _read_csv(path):
    table = pd.read_csv(
        path,
        dtype={"cause": str, "effect": str},
        keep_default_na=False,
        float_precision="round_trip",
    )
    graph = nx.DiGraph()
    for row in table.to_dict("records"):
        attrs = {"probability": row["probability"], "weight": row["weight"]}
        if "undirected" in row:
            attrs["undirected"] = row["undirected"]
        graph.add_edge(row["cause"], row["effect"], **attrs)
    return table, graph


_DOT_TOKEN = re.compile(
    r'\s*(?:(//[^\n]*)|("(?:[^"\\]|\\.)*")|(->)|([\[\]{};,=])|([^\s\[\]{};,="]+))'
)


def _dot_unquote(token):
    if not token.startswith('"'):
        return token
    escapes = {"\\": "\\", '"': '"', "n": "\n", "r": "\r"}
    return re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), "\\" + m.group(1)), token[1:-1])


def _dot_value(token):
    if token in ("true", "false"):
        return token == "true"
    try:
        return float(token)
    except ValueError:
        return _dot_unquote(token)


def _parse_dot(text):
    """A parser for the DOT subset the writer emits: node statements, ``a -> b [k=v, ...]``;
    an edge with ``undirected=true`` stands for both directions (``reverse_*`` the other)."""
    tokens, pos = [], 0
    while pos < len(text.rstrip()):
        m = _DOT_TOKEN.match(text, pos)
        assert m and m.end() > pos, f"cannot parse DOT at {text[pos : pos + 30]!r}"
        pos = m.end()
        if not m.group(1):
            tokens.append(m.group(m.lastindex))
    assert tokens[:3] == ["digraph", "pyrostruct", "{"] and tokens[-1] == "}"
    graph, statements, current = nx.DiGraph(), [], []
    for token in tokens[3:-1]:
        if token == ";":
            statements.append(current)
            current = []
        else:
            current.append(token)
    assert current == []
    for st in statements:
        if st[0] == "graph":
            continue
        attrs = {}
        if "[" in st:
            body = st[st.index("[") + 1 : st.index("]")]
            for k in range(0, len(body), 4):  # key = value ,
                assert body[k + 1] == "="
                attrs[body[k]] = _dot_value(body[k + 2])
            st = st[: st.index("[")]
        if len(st) == 1:
            graph.add_node(_dot_unquote(st[0]))
            continue
        assert len(st) == 3 and st[1] == "->", st
        u, v = _dot_unquote(st[0]), _dot_unquote(st[2])
        if attrs.get("undirected"):
            assert attrs["dir"] == "none"
            back = {"probability": attrs.pop("reverse_probability"),
                    "weight": attrs.pop("reverse_weight"), "undirected": True}  # fmt: skip
            graph.add_edge(v, u, **back)
            del attrs["dir"]
        graph.add_edge(u, v, **attrs)
    return graph


def _dot_graph(graph):
    """The graph as _parse_dot returns it: edges in the order the DOT file lists them."""
    out = nx.DiGraph()
    out.add_nodes_from(graph.nodes)
    out.add_edges_from(graph.edges(data=True))
    return out


@pytest.mark.parametrize("cpdag", [False, True], ids=["dag", "cpdag"])
def test_json_reads_back_to_the_same_graph_and_result(tmp_path, cpdag):
    result, path = _mixed(), tmp_path / "g.json"
    result.save(path, cpdag=cpdag)
    graph = _read_json(path)
    _assert_same_graph(graph, result.to_networkx(cpdag=cpdag))
    assert graph.graph["pyrostruct"].get("cpdag", False) is cpdag
    again = load_result(path)
    assert again.names == NAMES and np.array_equal(again.edge_probs, result.edge_probs)
    assert sorted(result.to_json_dict(cpdag=cpdag)) == [
        "directed",
        "edges",
        "graph",
        "multigraph",
        "nodes",
    ]


@pytest.mark.parametrize("cpdag", [False, True], ids=["dag", "cpdag"])
def test_graphml_reads_back_to_the_same_graph(tmp_path, cpdag):
    result, path = _mixed(), tmp_path / "g.graphml"
    result.save(path, cpdag=cpdag)
    graph = _read_graphml(path)
    expected = result.to_networkx(cpdag=cpdag)
    _assert_same_graph(graph, expected)
    defaults = {"node_default": {}, "edge_default": {}}  # read_graphml adds these
    assert graph.graph == {**expected.graph, **defaults}  # scalar metadata, and cpdag
    if cpdag:
        assert _undirected(graph) == [("a b", "ünïcode β"), ("ünïcode β", "a b")]


@pytest.mark.parametrize("cpdag", [False, True], ids=["dag", "cpdag"])
def test_csv_reads_back_to_the_same_edges(tmp_path, cpdag):
    result, path = _mixed(), tmp_path / "g.csv"
    result.save(path, cpdag=cpdag)
    table, graph = _read_csv(path)
    assert list(table.columns) == ["cause", "effect", "probability", "weight"] + (
        ["undirected"] if cpdag else []
    )
    assert _edges(graph) == _edges(result.to_networkx(cpdag=cpdag))
    assert len(table) == result.to_networkx(cpdag=cpdag).number_of_edges()
    pd.testing.assert_frame_equal(table, result.edge_table(cpdag=cpdag))


@pytest.mark.parametrize("cpdag", [False, True], ids=["dag", "cpdag"])
def test_dot_reads_back_to_the_same_graph(tmp_path, cpdag):
    result, path = _mixed(), tmp_path / "g.gv"
    result.save(path, cpdag=cpdag)
    text = path.read_text(encoding="utf-8")
    assert text == result.to_dot(cpdag=cpdag)
    graph = _parse_dot(text)
    expected = result.to_networkx(cpdag=cpdag)
    assert sorted(graph.nodes) == sorted(expected.nodes) and list(graph.nodes)[:5] == NAMES[:5]
    assert _edges(graph) == _edges(expected)
    if cpdag:  # one line for the undirected edge
        assert (
            text.count("dir=none") == 1 and text.count('" -> "') == expected.number_of_edges() - 1
        )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pyparsing's, inside pydot
def test_dot_parses_with_pydot(tmp_path):
    pydot = pytest.importorskip("pydot")
    result = _mixed()
    expected = result.to_networkx(cpdag=True)
    (graph,) = pydot.graph_from_dot_data(result.to_dot(cpdag=True))
    nodes = [_dot_unquote(n.get_name()) for n in graph.get_nodes()]
    assert nodes == ["graph", *NAMES]  # pydot lists the graph attribute statement as a node
    edges = {
        (_dot_unquote(e.get_source()), _dot_unquote(e.get_destination())): e.get_attributes()
        for e in graph.get_edges()
    }
    assert len(edges) == expected.number_of_edges() - 1
    for (u, v), attrs in edges.items():
        assert float(attrs["probability"]) == expected.edges[u, v]["probability"]


def test_all_pairs_csv_lists_every_pair_with_a_positive_probability(tmp_path):
    result, path = _mixed(), tmp_path / "pairs.csv"
    result.save(path, all_pairs=True, cpdag=True)
    table = pd.read_csv(
        path,
        dtype={"cause": str, "effect": str},
        keep_default_na=False,
        float_precision="round_trip",
    )
    assert list(table.columns) == [
        "cause",
        "effect",
        "probability",
        "weight",
        "consensus",
        "undirected",
    ]
    probs = result.edge_probs
    assert len(table) == int((probs > 0).sum())
    assert table["probability"].is_monotonic_decreasing
    for row in table.to_dict("records"):
        i, j = NAMES.index(row["cause"]), NAMES.index(row["effect"])
        assert row["probability"] == probs[i, j] and row["weight"] == result.weights[i, j]
    cpdag = result.to_networkx(cpdag=True)
    in_graph = table[table["consensus"]]
    assert sorted(zip(in_graph["cause"], in_graph["effect"])) == sorted(cpdag.edges)
    assert sorted(zip(*table[table["undirected"]][["cause", "effect"]].values.T)) == _undirected(
        cpdag
    )
    assert ("iso lated", 'say "hi"') in set(zip(table["cause"], table["effect"]))
    assert not table[table["cause"] == "iso lated"]["consensus"].any()


def test_an_empty_graph_writes_every_format(tmp_path):
    result = _result(np.zeros((2, 2)), ["p", "q"])
    for name in ["g.json", "g.graphml", "g.dot", "g.csv"]:
        result.save(tmp_path / name, cpdag=True)
    assert list(nx.read_graphml(tmp_path / "g.graphml").nodes) == ["p", "q"]
    assert list(_parse_dot((tmp_path / "g.dot").read_text()).nodes) == ["p", "q"]
    table, _ = _read_csv(tmp_path / "g.csv")
    assert len(table) == 0 and "undirected" in table.columns


# -- formats, paths and values ------------------------------------------------------


def test_the_format_follows_the_suffix_else_json(tmp_path):
    suffixes = ["a.json", "a.GraphML", "a.dot", "a.gv", "a.csv"]
    assert [output_format(p) for p in suffixes] == ["json", "graphml", "dot", "dot", "csv"]
    assert output_format("a.txt") == output_format("noext") == "json"
    result = _mixed()
    result.save(tmp_path / "g.txt")  # an unknown suffix: JSON, as save() always wrote
    assert load_result(tmp_path / "g.txt").names == NAMES
    result.save(tmp_path / "table.txt", format="csv")  # an unknown suffix takes any format
    assert (tmp_path / "table.txt").read_text().startswith("cause,effect,probability,weight\n")
    result.save(tmp_path / "graph", format="graphml")
    assert list(nx.read_graphml(tmp_path / "graph").nodes) == NAMES


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("g.json", {"format": "csv"}, "format csv contradicts path"),
        ("g.csv", {"format": "json"}, "whose suffix .csv means csv; name the file .json"),
        ("g.txt", {"format": "xml"}, "format must be one of json, graphml, dot, csv; got 'xml'"),
        ("g.json", {"all_pairs": True}, "all_pairs applies to the CSV edge list only"),
        ("g.dot", {"format": "dot", "all_pairs": True}, "not to dot"),
    ],
)
def test_bad_format_requests_are_refused_and_write_nothing(tmp_path, name, kwargs, message):
    with pytest.raises(InputError, match=re.escape(message)):
        _mixed().save(tmp_path / name, **kwargs)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["g.json", "g.graphml", "g.dot", "g.csv"])
def test_non_finite_values_are_refused_before_anything_is_written(tmp_path, name):
    result = _mixed()
    result.weights[0, 3] = np.nan  # a consensus edge
    with pytest.raises(InputError, match="non-finite"):
        result.save(tmp_path / name, cpdag=True)
    assert list(tmp_path.iterdir()) == []


def test_non_finite_weight_of_a_pair_is_refused_in_the_all_pairs_table(tmp_path):
    result = _mixed()
    result.weights[6, 2] = np.inf  # a pair with a probability, not in the graph
    result.save(tmp_path / "g.csv")  # not written: fine
    with pytest.raises(InputError, match="non-finite"):
        result.save(tmp_path / "pairs.csv", all_pairs=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.csv"]


def test_non_finite_metadata_is_refused_in_graph_files(tmp_path):
    result = _result(_from_edges(2, [(0, 1, 0.9)]), metadata={"final_elbo": float("nan")})
    for name in ["g.graphml", "g.json"]:
        with pytest.raises(InputError, match="non-finite"):
            result.save(tmp_path / name)
    result.save(tmp_path / "g.dot")  # DOT and CSV hold no metadata
    result.save(tmp_path / "g.csv")
    assert "nan" not in (tmp_path / "g.dot").read_text().lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.csv", "g.dot"]


@pytest.mark.parametrize("name", ["g.json", "g.graphml", "g.dot", "g.csv"])
def test_files_get_ordinary_permissions_and_replace_atomically(tmp_path, name):
    path = tmp_path / name
    mask = os.umask(0o027)
    try:
        _mixed().save(path)
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    path.chmod(0o600)
    _mixed().save(path, cpdag=True)  # replaced, keeping the file's mode
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary file left


# -- causal-learn -------------------------------------------------------------------


def _from_general_graph(general):
    """(directed, undirected) name pairs of a causal-learn GeneralGraph."""
    from causallearn.graph.Endpoint import Endpoint

    directed, undirected = [], []
    for edge in general.get_graph_edges():
        a, b = edge.get_node1().get_name(), edge.get_node2().get_name()
        ends = (edge.get_endpoint1(), edge.get_endpoint2())
        if ends == (Endpoint.TAIL, Endpoint.ARROW):
            directed.append((a, b))
        elif ends == (Endpoint.ARROW, Endpoint.TAIL):
            directed.append((b, a))
        else:
            assert ends == (Endpoint.TAIL, Endpoint.TAIL), ends
            undirected += [(a, b), (b, a)]
    return sorted(directed), sorted(undirected)


@pytest.mark.parametrize("cpdag", [False, True], ids=["dag", "cpdag"])
def test_causal_learn_general_graph_round_trip(cpdag):
    pytest.importorskip("causallearn")
    result = _mixed()
    general = result.to_causallearn(cpdag=cpdag)
    assert [n.get_name() for n in general.get_nodes()] == NAMES
    graph = result.to_networkx(cpdag=cpdag)
    assert _from_general_graph(general) == (
        sorted((u, v) for u, v in graph.edges if not graph.edges[u, v].get("undirected")),
        _undirected(graph),
    )


def test_our_cpdag_is_causal_learns_cpdag():
    pytest.importorskip("causallearn")
    from causallearn.utils.DAG2CPDAG import dag2cpdag

    for result in [_mixed(), _result(_from_edges(3, [(0, 1, 0.9), (1, 2, 0.8)]))]:
        theirs = dag2cpdag(result.to_causallearn())
        assert _from_general_graph(theirs) == _from_general_graph(result.to_causallearn(cpdag=True))


def test_without_causal_learn_the_error_says_how_to_install_it(monkeypatch):
    for name in ["causallearn", "causallearn.graph", "causallearn.graph.Edge",
                 "causallearn.graph.Endpoint", "causallearn.graph.GeneralGraph",
                 "causallearn.graph.GraphNode"]:  # fmt: skip
        monkeypatch.setitem(__import__("sys").modules, name, None)
    with pytest.raises(ImportError, match=r"pip install causal-learn"):
        _mixed().to_causallearn()
