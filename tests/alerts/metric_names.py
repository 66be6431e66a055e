"""Extract the metric names a PromQL expression reads, to check them against what is exported.

A small lexer, not a full parser: it drops strings, comments, label matchers (but reads
`__name__="x"`), range and subquery brackets, durations, numbers, keywords, label lists of
by/without/on/ignoring/group_left/group_right, and identifiers followed by `(` (functions and
aggregations). Whatever identifier remains is a metric name. A regex `__name__=~"..."` matcher
cannot be resolved to names and is ignored.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<duration>(?:\d+(?:ms|s|m|h|d|w|y))+(?![\w:]))
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=,(){}\[\]@:!])
    """,
    re.VERBOSE,
)

# Keywords that are never metric names (PromQL keywords are case-insensitive).
_KEYWORDS = frozenset({"and", "or", "unless", "offset", "bool", "atan2", "inf", "nan", "start", "end"})
# Keywords followed by a parenthesised list of label names.
_LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
# Aggregation operators may be followed by `by (...)` before their `(`, so they are not
# recognised by the `(` that follows them.
_AGGREGATIONS = frozenset(
    {
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    }
)


def _tokens(expr: str) -> list[tuple[str, str]]:
    """Split `expr` into (kind, text) tokens, without spaces and comments."""
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise ValueError(f"cannot tokenize PromQL at {expr[pos : pos + 30]!r}")
        kind = match.lastgroup or ""
        if kind not in ("space", "comment"):
            out.append((kind, match.group()))
        pos = match.end()
    return out


def _skip_group(tokens: list[tuple[str, str]], i: int, opening: str, closing: str) -> int:
    """Return the index after the group that opens at tokens[i] (if it is `opening`)."""
    if i >= len(tokens) or tokens[i][1] != opening:
        return i
    depth = 0
    while i < len(tokens):
        if tokens[i][1] == opening:
            depth += 1
        elif tokens[i][1] == closing:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


def _names_in_matchers(tokens: list[tuple[str, str]]) -> set[str]:
    """Return the values of `__name__="..."` matchers inside a `{...}` token group."""
    names: set[str] = set()
    for j in range(len(tokens) - 2):
        if tokens[j][1] == "__name__" and tokens[j + 1][1] == "=" and tokens[j + 2][0] == "string":
            names.add(tokens[j + 2][1][1:-1])
    return names


def names_in_expr(expr: str) -> set[str]:
    """Return the set of metric names read by the PromQL expression `expr`."""
    tokens = _tokens(expr)
    names: set[str] = set()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        if text == "{":
            end = _skip_group(tokens, i, "{", "}")
            names |= _names_in_matchers(tokens[i:end])
            i = end
        elif text == "[":
            i = _skip_group(tokens, i, "[", "]")
        elif kind == "ident" and text.lower() in _LABEL_LIST_KEYWORDS:
            i = _skip_group(tokens, i + 1, "(", ")")
        elif kind == "ident":
            follows_paren = i + 1 < len(tokens) and tokens[i + 1][1] == "("
            lowered = text.lower()
            if not (follows_paren or lowered in _KEYWORDS or lowered in _AGGREGATIONS):
                names.add(text)
            i += 1
        else:
            i += 1
    return names
