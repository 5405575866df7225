"""Mutation operators over a module's AST: list the mutation points, write the source of one mutant.

Operators: comparison boundaries and negations (< and <=, > and >=, == and !=, is and is not, in and
not in); arithmetic (+ and -, * and /, // to *, % to //, | and &, ** to *; augmented assignments too);
numbers (n to n + 1, so 0 to 1); True and False; and/or; ``not x`` to ``x``; ``-x`` to ``x``; max/min and
any/all; the conditions of ``if``, ``while`` and conditional expressions negated; ``return x`` to
``return None``; continue/break; statement deletion (an assignment, an expression statement or a
``raise`` becomes ``pass``).

Never mutated: docstrings and other strings, imports, annotations, decorators. Points are numbered in one
deterministic walk of the tree, so a point's index names the same mutant in every walk of the same source.
"""

from __future__ import annotations

import ast
from collections import Counter
from dataclasses import dataclass

_COMPARE: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In,
}  # fmt: skip
_BINOP: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv, ast.BitOr: ast.BitAnd, ast.BitAnd: ast.BitOr, ast.Pow: ast.Mult,
}  # fmt: skip
_SYMBOL: dict[type[ast.AST], str] = {
    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.Is: "is",
    ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in", ast.Add: "+", ast.Sub: "-", ast.Mult: "*",
    ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.BitOr: "|", ast.BitAnd: "&", ast.Pow: "**",
    ast.And: "and", ast.Or: "or",
}  # fmt: skip
_CALLS = {"max": "min", "min": "max", "any": "all", "all": "any"}


@dataclass(frozen=True, slots=True)
class Mutation:
    """One mutation point: its index in the walk, line, enclosing function or class, what it changes.

    ``key`` (``scope: description #n``, n counting the same change in the same scope) stays the same when
    other functions are edited: ``equivalent`` names mutants by it.
    """

    index: int
    line: int
    scope: str
    description: str
    key: str


class _Walker(ast.NodeTransformer):
    """Counts mutation points in walk order; applies the one numbered ``target`` (None: none)."""

    def __init__(self, target: int | None) -> None:
        self.target = target
        self.points: list[tuple[int, str, str]] = []
        self.scope: list[str] = []

    def _point(self, node: ast.AST, description: str) -> bool:
        """Register a point; True when it is the one to apply."""
        self.points.append((getattr(node, "lineno", 0), ".".join(self.scope) or "<module>", description))
        return len(self.points) - 1 == self.target

    # scopes, and what is never mutated
    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        self.scope.append(node.name)
        node.args = self.visit(node.args)  # defaults; annotations are skipped by visit_arg
        node.body = [self.visit(statement) for statement in node.body]
        self.scope.pop()
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        return self._function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
        return self._function(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        self.scope.append(node.name)
        node.body = [self.visit(statement) for statement in node.body]
        self.scope.pop()
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        return node

    def visit_Import(self, node: ast.Import) -> ast.AST:
        return node

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        if node.value is None:
            return node
        if self._point(node, "delete statement"):
            return ast.copy_location(ast.Pass(), node)
        node.value = self.visit(node.value)
        return node

    # statements
    def _deletable(self, node: ast.stmt) -> ast.AST:
        if self._point(node, "delete statement"):
            return ast.copy_location(ast.Pass(), node)
        return self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> ast.AST:
        return self._deletable(node)

    def visit_Raise(self, node: ast.Raise) -> ast.AST:
        return self._deletable(node)

    def visit_Expr(self, node: ast.Expr) -> ast.AST:
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return node  # a docstring
        return self._deletable(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        if self._point(node, "delete statement"):
            return ast.copy_location(ast.Pass(), node)
        if self._swap_operator(node, "="):
            return node
        return self.generic_visit(node)

    def visit_Return(self, node: ast.Return) -> ast.AST:
        value = node.value
        returns_none = value is None or (isinstance(value, ast.Constant) and value.value is None)
        if not returns_none and self._point(node, "return None"):
            node.value = ast.Constant(None)
            return node
        return self.generic_visit(node)

    def visit_Continue(self, node: ast.Continue) -> ast.AST:
        return ast.copy_location(ast.Break(), node) if self._point(node, "continue -> break") else node

    def visit_Break(self, node: ast.Break) -> ast.AST:
        return ast.copy_location(ast.Continue(), node) if self._point(node, "break -> continue") else node

    def visit_If(self, node: ast.If) -> ast.AST:
        if self._point(node, "negate if condition"):
            node.test = ast.UnaryOp(ast.Not(), node.test)
            return node
        return self.generic_visit(node)

    def visit_While(self, node: ast.While) -> ast.AST:
        if self._point(node, "negate while condition"):
            node.test = ast.UnaryOp(ast.Not(), node.test)
            return node
        return self.generic_visit(node)

    # expressions
    def visit_IfExp(self, node: ast.IfExp) -> ast.AST:
        if self._point(node, "negate conditional expression"):
            node.test = ast.UnaryOp(ast.Not(), node.test)
            return node
        return self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        for i, op in enumerate(node.ops):
            swap = _COMPARE[type(op)]
            if self._point(node, f"{_SYMBOL[type(op)]} -> {_SYMBOL[swap]}"):
                node.ops[i] = swap()
                return node
        return self.generic_visit(node)

    def _swap_operator(self, node: ast.BinOp | ast.AugAssign, suffix: str = "") -> bool:
        """The arithmetic operator swap (``suffix`` "=" for an augmented assignment); True when applied."""
        swap = _BINOP.get(type(node.op))
        if swap is None:
            return False
        if self._point(node, f"{_SYMBOL[type(node.op)]}{suffix} -> {_SYMBOL[swap]}{suffix}"):
            node.op = swap()
            return True
        return False

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        if self._swap_operator(node):
            return node
        return self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        swap = ast.Or if isinstance(node.op, ast.And) else ast.And
        if self._point(node, f"{_SYMBOL[type(node.op)]} -> {_SYMBOL[swap]}"):
            node.op = swap()
            return node
        return self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        if isinstance(node.op, ast.Not | ast.USub) and self._point(
            node, "remove not" if isinstance(node.op, ast.Not) else "remove unary -"
        ):
            return node.operand
        return self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else ""
        swap = _CALLS.get(name)
        if swap is not None and self._point(node, f"{name} -> {swap}"):
            node.func = ast.copy_location(ast.Name(swap, ast.Load()), func)
            return node
        return self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        value = node.value
        if isinstance(value, bool):
            if self._point(node, f"{value} -> {not value}"):
                return ast.copy_location(ast.Constant(not value), node)
        elif isinstance(value, int | float) and self._point(node, f"{value!r} -> {value + 1!r}"):
            return ast.copy_location(ast.Constant(value + 1), node)
        return node


def mutations(source: str) -> list[Mutation]:
    """Every mutation point of ``source``, in walk order."""
    walker = _Walker(None)
    walker.visit(ast.parse(source))
    seen: Counter[tuple[str, str]] = Counter()
    out = []
    for index, (line, scope, description) in enumerate(walker.points):
        seen[scope, description] += 1
        key = f"{scope}: {description} #{seen[scope, description]}"
        out.append(Mutation(index, line, scope, description, key))
    return out


def mutant(source: str, index: int | None) -> str:
    """The source with mutation ``index`` applied (None: the source as unparsed, mutated nowhere)."""
    walker = _Walker(index)
    tree = ast.fix_missing_locations(walker.visit(ast.parse(source)))
    return ast.unparse(tree)
