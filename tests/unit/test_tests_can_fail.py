"""Tests that cannot fail: every test checks what it exercises on every path, and nothing skips on its own.

Every module under tests/ is read with `ast` (nothing is imported or run). A *test* is what pytest collects
from a `test_*.py` module: a module-level `def test*`, or a `def test*` in a module-level `class Test*`.

**What a check is.**

* an `assert` statement, or a `raise` statement (the test fails there);
* a call to `pytest.raises`, `pytest.warns`, `pytest.deprecated_call` or `pytest.fail` (also when imported by
  name, `from pytest import raises`);
* a call to a *checking helper*: a function defined in tests/ that itself checks on every path (rule 1,
  applied to its body; recursively), found by the called name: a function nested in the test, a method of the
  test's class (`self.name(...)`), a module-level function of the test's module, or a function reached through
  an import of a module under tests/ (`from tests.x import name`, relative imports, `import tests.x as m;
  m.name(...)`), following re-exports. A helper that checks only on some paths is no check:
  `tests.system.require` calls `pytest.fail` only when something is missing, so calling it checks nothing;
* a call to a function *not* defined in tests/ whose name starts with `assert` (`np.testing.assert_allclose`,
  `mock.assert_called_once_with`) or `expect_`. A `check_*` name is a check only as a checking helper in
  tests/: outside, `subprocess.check_output` checks nothing about what the test exercises.

**Rule 1a, 1b: every path through a test checks.** The paths are followed statement by statement; a path has
checked once it passed a statement holding a check, with these paths through compound statements:

* `if`: the condition (when it holds a check, every path has checked), then the body or the `else`; an `if`
  with no `else` has a path that skips its body;
* `for`: zero iterations is a path, unless the iterable is a non-empty literal (`(a, b)`, `[x]`, a dict or set
  display, a non-empty string, `range` of literal bounds with at least one step, and `enumerate`, `zip`,
  `sorted`, `reversed` of those). `while` likewise, unless it is `while True:`. A loop's `else` is on the
  paths that did not `break`;
* `with`: its context expressions, then its body;
* `try`: the body then its `else`; each `except` handler starts from the state before the `try` (the error
  may come before any check in the body), so `except Error: pass` is a path that checked nothing; `finally`
  is on every path;
* `return` (without a check in its value), `break` and `continue` end a path where it stands: a `return`
  before any check is a path that checked nothing; a `match` may match no case;
* nested `def`, `class` and `lambda` bodies are not run by the statement that defines them.

A test is flagged when a path reaches its end, or a `return`, without having checked: *no check* when it
holds none at all (1a), else where its checks can be missed (1b): "checks only under `if` with no `else`",
"checks only inside a `for` over what may be empty", "`except` swallows the error", "returns before any
check". So `if within: assert ...` alone, or asserts only in `for row in rows:` with nothing checked outside,
fail; `assert rows` before the loop, or an `else` that checks, pass.

**Rule 1c: a check that depends on this run's outcome says what holds otherwise.** In a test's own body
(not its helpers'), an `if` with no `else` whose condition holds no check, whose body holds one and then
carries on (its last statement is not `return`, `raise`, `continue` or `break`) is flagged even when the test
checks elsewhere: "checks only when `<condition>`". This is the test that asserts the rule only when a given
row happened to win (`if q["variant"] == "int8+calibration": assert ...`): it must assert what holds on the
table it got, whichever row won, so the `else` says what holds otherwise. A guard that ends by leaving
(`if not eligible: assert chosen is None; return`) is the `if` of an if/else whose `else` is the rest of
the block, and passes. Not caught: a check made conditional inside one expression (`assert a is None or b`).

**Rule 2: no test skips on its own.** Anywhere under tests/ except tests/system.py, these are flagged:
`pytest.skip(...)`, `pytest.importorskip(...)`, `pytest.xfail(...)`, `pytest.mark.skip`, `pytest.mark.xfail`
(a test that passes by failing), and `pytest.mark.skipif` unless it is *justified*. A missing package or
tool goes through `tests.system.require(...)`, which CI (`EDGEKILN_REQUIRE_SYSTEM=1`) turns into a failure.
A `skipif` is justified when it has a non-empty literal `reason=` and no other argument, and its condition
reads only the host's processor or OS (`platform.machine()`, `platform.system()`, `platform.processor()`,
`sys.platform`, the compiler's `host_isa()`), literals, comparisons and methods of those: a fact of the
machine that no install changes, about behaviour that exists only on such a host (where `require`, failing
in CI, would be wrong), never a missing install, an environment variable or a file.
"""

from __future__ import annotations

import ast
import functools
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT

TESTS = ROOT / "tests"
ALLOWED_TO_SKIP = TESTS / "system.py"

PYTEST_CHECKS = {"raises", "warns", "deprecated_call", "fail"}
PYTEST_SKIPS = {"skip", "importorskip", "xfail"}
MARK_SKIPS = {"skip", "xfail"}
EXTERNAL_CHECK = re.compile(r"^(assert|expect_)")
# What a justified skipif's condition may read: the host's processor and OS.
HOST_FACTS = {"platform.machine", "platform.system", "sys.platform", "host_isa", "platform.processor"}


# ---------------------------------------------------------------------------------------------------------------
# The tests/ tree as modules: their functions and what each imported name refers to.


@dataclass
class Module:
    name: str  # dotted: tests.unit.test_x
    path: Path
    tree: ast.Module
    functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = field(default_factory=dict)
    # a name bound by an import -> (module, attribute) for `from m import a`, (module, None) for a module itself
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    pytest_names: dict[str, str] = field(default_factory=dict)  # `from pytest import raises as r` -> {"r": "raises"}
    pytest_modules: set[str] = field(default_factory=set)  # names bound to the pytest module itself


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def parse_module(name: str, source: str, path: Path = Path("<snippet>")) -> Module:
    tree = ast.parse(source, str(path))
    module = Module(name, path, tree)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            module.functions[node.name] = node
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "pytest":
                    module.pytest_modules.add(alias.asname or "pytest")
                elif alias.asname:
                    module.imports[alias.asname] = (alias.name, None)
                else:  # `import tests.x` binds `tests`; attribute chains are resolved at the call
                    module.imports[alias.name.split(".")[0]] = (alias.name.split(".")[0], None)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package[: len(package) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            for alias in node.names:
                if base == "pytest":
                    module.pytest_names[alias.asname or alias.name] = alias.name
                else:
                    module.imports[alias.asname or alias.name] = (base, alias.name)
    return module


def read_tree(root: Path) -> dict[str, Module]:
    """Every .py file under root/tests, by dotted name."""
    modules = {}
    for path in sorted((root / "tests").rglob("*.py")):
        name = _module_name(path, root)
        modules[name] = parse_module(name, path.read_text(), path)
    return modules


# ---------------------------------------------------------------------------------------------------------------
# What a call is: a check, a skip, or a call of a function defined in tests/.


def _dotted(node: ast.expr) -> str | None:
    """`a.b.c` as text, or None when the expression is not a plain name chain."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return None if inner is None else f"{inner}.{node.attr}"
    return None


def pytest_attr(module: Module, func: ast.expr) -> str | None:
    """`raises` for `pytest.raises` or a `from pytest import raises` name; else None."""
    if isinstance(func, ast.Name):
        return module.pytest_names.get(func.id)
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in module.pytest_modules:
        return func.attr
    return None


def pytest_mark(module: Module, node: ast.AST) -> str | None:
    """`skip` for `pytest.mark.skip` (or `mark.skip` after `from pytest import mark`); else None."""
    if not isinstance(node, ast.Attribute):
        return None
    return node.attr if pytest_attr(module, node.value) == "mark" else None


class Checker:
    """Rule 1 over a set of modules (a tree, or snippets)."""

    def __init__(self, modules: dict[str, Module]) -> None:
        self.modules = modules
        self._helper_checks: dict[int, bool] = {}

    # -- resolving names ------------------------------------------------------------------------------------
    def _lookup(self, module_name: str, attribute: str, seen: frozenset = frozenset()):
        """The function `attribute` of module `module_name` (following re-exports), or None."""
        key = (module_name, attribute)
        if key in seen:
            return None
        seen = seen | {key}
        module = self.modules.get(module_name)
        if module is None:
            # `from tests import choice_rule` then choice_rule.f: the submodule itself is not a function
            return None
        if attribute in module.functions:
            return module, module.functions[attribute]
        if attribute in module.imports:
            target, name = module.imports[attribute]
            if name is not None:
                return self._lookup(target, name, seen)
        return None

    def _module_of_chain(self, module: Module, chain: list[str]) -> str | None:
        """The tests module an attribute chain (`m`, `tests.choice_rule`) names, or None."""
        head, rest = chain[0], chain[1:]
        if head not in module.imports:
            return None
        target, name = module.imports[head]
        dotted = ".".join([target] + ([name] if name else []) + rest)
        return dotted if dotted in self.modules else None

    def resolve(self, module: Module, call: ast.Call, scope: Scope):
        """The (module, function) in tests/ that this call runs, or None."""
        func = call.func
        if isinstance(func, ast.Name):
            for local in reversed(scope.locals):
                if func.id in local:
                    return module, local[func.id]
            if func.id in module.functions:
                return module, module.functions[func.id]
            if func.id in module.imports:
                target, name = module.imports[func.id]
                if name is not None:
                    return self._lookup(target, name)
            return None
        dotted = _dotted(func)
        if dotted is None:
            return None
        chain = dotted.split(".")
        if chain[0] == "self" and len(chain) == 2 and scope.cls is not None:
            method = next((n for n in scope.cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                           and n.name == chain[1]), None)
            return (module, method) if method is not None else None
        owner = self._module_of_chain(module, chain[:-1])
        return None if owner is None else self._lookup(owner, chain[-1])

    def is_check_call(self, module: Module, call: ast.Call, scope: Scope) -> bool:
        if pytest_attr(module, call.func) in PYTEST_CHECKS:
            return True
        resolved = self.resolve(module, call, scope)
        if resolved is not None:
            return self.helper_checks(*resolved, scope.cls if resolved[0] is module else None)
        name = call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", "")
        return bool(EXTERNAL_CHECK.match(name))

    def helper_checks(self, module: Module, function: ast.FunctionDef | ast.AsyncFunctionDef,
                      cls: ast.ClassDef | None = None) -> bool:
        key = id(function)
        if key not in self._helper_checks:
            self._helper_checks[key] = False  # recursion: a helper that only calls itself checks nothing
            scope = Scope(cls=cls, locals=[_nested_defs(function)])
            self._helper_checks[key] = self.where_missed(module, function.body, scope) is None
        return self._helper_checks[key]

    # -- the flow rule ----------------------------------------------------------------------------------------
    def holds_check(self, module: Module, node: ast.AST, scope: Scope) -> bool:
        """A check occurs anywhere in this node (not in nested def, class or lambda bodies)."""
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            return False
        if isinstance(node, ast.Assert | ast.Raise):
            return True
        if isinstance(node, ast.Call) and self.is_check_call(module, node, scope):
            return True
        return any(self.holds_check(module, child, scope) for child in ast.iter_child_nodes(node))

    def where_missed(self, module: Module, body: list[ast.stmt], scope: Scope) -> str | None:
        """None when every path through this function body checks; else where a path goes unchecked."""
        flow = Flow(self, module, scope)
        end = flow.block(body, NO_CHECK)
        missed = [m for m in [end, *flow.returns] if m is not None]
        return next((m for m in missed if m != NO_CHECK), missed[0] if missed else None)


NO_CHECK = "no check"
State = str | None  # None: every path reaching here has checked (or none reaches); else how one has not


def _merge(*states: State) -> State:
    """The state where paths join: checked only when each is; the most telling reason otherwise."""
    missed = [s for s in states if s is not None]
    return next((s for s in missed if s != NO_CHECK), missed[0] if missed else None)


@dataclass
class Flow:
    """Paths through one function body: the state at each point is whether a path reaching it has checked."""

    checker: Checker
    module: Module
    scope: Scope
    returns: list[State] = field(default_factory=list)  # the state at each `return`
    loop_exits: list[list[tuple[type, State]]] = field(default_factory=list)  # per loop: (Break or Continue, state)

    def holds(self, node: ast.AST | None) -> bool:
        return node is not None and self.checker.holds_check(self.module, node, self.scope)

    def block(self, body: list[ast.stmt], state: State) -> State:
        for stmt in body:
            if state is None:
                return None  # checked (or unreachable): nothing after can undo it
            state = self.stmt(stmt, state)
        return state

    def stmt(self, stmt: ast.stmt, state: str) -> State:
        line = stmt.lineno
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            return state
        if isinstance(stmt, ast.Return):
            self.returns.append(None if self.holds(stmt.value) else f"line {line}: returns before any check")
            return None
        if isinstance(stmt, ast.Break | ast.Continue):
            if self.loop_exits:
                self.loop_exits[-1].append((type(stmt), state))
            return None
        if isinstance(stmt, ast.If):
            if self.holds(stmt.test):
                return None
            body, orelse = self.block(stmt.body, state), self.block(stmt.orelse, state)
            if body is None and orelse is not None and (orelse == state):
                return f"line {line}: checks only under `if`" + ("" if stmt.orelse else " with no `else`")
            if orelse is None and body is not None and body == state:
                return f"line {line}: checks only under the `else` of `if`"
            return _merge(body, orelse)
        if isinstance(stmt, ast.For | ast.AsyncFor | ast.While):
            return self.loop(stmt, state)
        if isinstance(stmt, ast.With | ast.AsyncWith):
            if any(self.holds(item.context_expr) for item in stmt.items):
                return None
            return self.block(stmt.body, state)
        if isinstance(stmt, ast.Try | ast.TryStar):
            return self.try_(stmt, state)
        if isinstance(stmt, ast.Match):
            if self.holds(stmt.subject):
                return None
            cases = [self.block(case.body, state) for case in stmt.cases]
            return _merge(state, *cases)  # no case may match
        return None if self.holds(stmt) else state

    def loop(self, stmt: ast.For | ast.AsyncFor | ast.While, state: str) -> State:
        line = stmt.lineno
        head = stmt.iter if isinstance(stmt, ast.For | ast.AsyncFor) else stmt.test
        if self.holds(head):
            return None
        runs = (_non_empty_literal(stmt.iter) if isinstance(stmt, ast.For | ast.AsyncFor)
                else isinstance(stmt.test, ast.Constant) and stmt.test.value is True)
        self.loop_exits.append([])
        end = self.block(stmt.body, state)
        exits = self.loop_exits.pop()
        breaks = [got for kind, got in exits if kind is ast.Break]
        continues = [got for kind, got in exits if kind is ast.Continue]
        if runs:  # the body runs at least once, from an unchecked state
            done = _merge(end, *continues)
        elif end is None and not exits:
            kind = "for" if isinstance(stmt, ast.For | ast.AsyncFor) else "while"
            done = f"line {line}: checks only inside a `{kind}` " + (
                "over what may be empty" if kind == "for" else "that may not run")
        else:
            done = _merge(state, end, *continues)
        # the `else` runs on the paths that did not break out
        return _merge(self.block(stmt.orelse, done) if stmt.orelse else done, *breaks)

    def try_(self, stmt: ast.Try | ast.TryStar, state: str) -> State:
        body = self.block(stmt.body, state)
        orelse = self.block(stmt.orelse, body)
        # an exception may come before any check in the body: a handler starts from the state before the try
        handlers = []
        for handler in stmt.handlers:
            got = self.block(handler.body, state)
            handlers.append(f"line {handler.lineno}: `except` swallows the error, checking nothing"
                            if got is not None and orelse is None else got)
        after = _merge(orelse, *handlers)
        return self.block(stmt.finalbody, after) if stmt.finalbody else after


@dataclass
class Scope:
    cls: ast.ClassDef | None = None
    locals: list[dict[str, ast.FunctionDef | ast.AsyncFunctionDef]] = field(default_factory=list)


def _nested_defs(function: ast.FunctionDef | ast.AsyncFunctionDef) -> dict:
    return {n.name: n for n in ast.walk(function) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            and n is not function}


def _non_empty_literal(node: ast.expr) -> bool:
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return bool(node.elts) and not any(isinstance(e, ast.Starred) for e in node.elts)
    if isinstance(node, ast.Dict):
        return bool(node.keys) and None not in node.keys
    if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
        return bool(node.value)
    if isinstance(node, ast.Call) and _dotted(node.func) == "range" and not node.keywords:
        values = [a.value if isinstance(a, ast.Constant) and type(a.value) is int else None for a in node.args]
        if None in values or not 1 <= len(values) <= 3 or values[2:] == [0]:
            return False
        return len(range(*values)) > 0
    if isinstance(node, ast.Call) and _dotted(node.func) in ("enumerate", "zip", "sorted", "reversed") and node.args:
        return all(_non_empty_literal(a) for a in node.args)
    return False


# ---------------------------------------------------------------------------------------------------------------
# The two rules over a module.


def collected_tests(module: Module):
    """(function, class or None) for every test of the module."""
    for node in module.tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
            yield node, None
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name.startswith("test"):
                    yield item, node


def unchecked(checker: Checker, module: Module) -> list[str]:
    """Rule 1: `file:line function: where` for each test that can pass without checking, or that checks
    something only when this run's outcome happens to take one branch."""
    found = []
    for function, cls in collected_tests(module):
        scope = Scope(cls=cls, locals=[_nested_defs(function)])
        name = f"{cls.name}.{function.name}" if cls else function.name
        miss = checker.where_missed(module, function.body, scope)
        misses = [miss] if miss is not None else []
        misses += [f"line {node.lineno}: checks only when `{_short(node.test)}`, nothing otherwise (no `else`)"
                   for node in _own_nodes(function) if isinstance(node, ast.If) and _one_sided(checker, module,
                                                                                                 node, scope)]
        found += [f"{_shown(module.path)}:{function.lineno} {name}: {m}" for m in misses[:1]]
    return found


def _own_nodes(function: ast.FunctionDef | ast.AsyncFunctionDef):
    """Every node of the function's own body (not of the functions and classes it defines)."""
    todo = list(function.body)
    while todo:
        node = todo.pop(0)
        yield node
        todo += [c for c in ast.iter_child_nodes(node)
                 if not isinstance(c, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda)]


def _one_sided(checker: Checker, module: Module, node: ast.If, scope: Scope) -> bool:
    """An `if` with no `else` that checks in its body and then carries on: when its condition is false, what
    the body checks is simply not checked. (A body that ends by leaving, `if not rows: assert ...; return`, is
    the `if` of an if/else whose `else` is the rest of the block.)"""
    if node.orelse or checker.holds_check(module, node.test, scope):
        return False
    if not any(checker.holds_check(module, stmt, scope) for stmt in node.body):
        return False
    return not isinstance(node.body[-1], ast.Return | ast.Raise | ast.Continue | ast.Break)


def _short(node: ast.expr) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 60 else text[:57] + "..."


def _justified_skipif(decorator: ast.Call) -> bool:
    """A non-empty literal reason, and a condition that reads only host facts, literals and their methods."""
    reason = next((k.value for k in decorator.keywords if k.arg == "reason"), None)
    if not (isinstance(reason, ast.Constant) and isinstance(reason.value, str) and reason.value.strip()):
        return False
    if len(decorator.args) != 1 or any(k.arg != "reason" for k in decorator.keywords):
        return False
    for node in ast.walk(decorator.args[0]):
        dotted = _dotted(node) if isinstance(node, ast.Name | ast.Attribute) else None
        if dotted is not None and not any(dotted == fact or fact.startswith(dotted + ".")
                                          or dotted.startswith(fact + ".") for fact in HOST_FACTS):
            return False  # a name that is not (a part of) a host fact: an install, an env variable, a file
        if not isinstance(node, ast.Name | ast.Attribute | ast.Call | ast.Compare | ast.BoolOp | ast.UnaryOp
                          | ast.Subscript | ast.Constant | ast.Tuple | ast.List | ast.Set | ast.cmpop | ast.boolop
                          | ast.unaryop | ast.expr_context):
            return False
    return True


def skips(module: Module) -> list[str]:
    """Rule 2: `file:line: what` for each skip outside tests/system.py."""
    if module.path == ALLOWED_TO_SKIP:
        return []
    found = []
    for node in ast.walk(module.tree):
        where = f"{_shown(module.path)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call) and pytest_attr(module, node.func) in PYTEST_SKIPS:
            found.append(f"{where}: pytest.{pytest_attr(module, node.func)}(...)")
        elif pytest_mark(module, node) in MARK_SKIPS:
            found.append(f"{where}: pytest.mark.{pytest_mark(module, node)}")
        elif isinstance(node, ast.Call) and pytest_mark(module, node.func) == "skipif":
            if not _justified_skipif(node):
                found.append(f"{where}: pytest.mark.skipif not justified (a host fact with a reason)")
        elif pytest_mark(module, node) == "skipif" and not any(
                isinstance(call, ast.Call) and call.func is node for call in ast.walk(module.tree)):
            found.append(f"{where}: pytest.mark.skipif without a condition")
    return found


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------------------------------
# The suite.


@functools.cache
def _tree() -> dict[str, Module]:
    return read_tree(ROOT)


def _test_modules() -> list[Module]:
    return [m for m in _tree().values() if m.path.name.startswith("test_")]


def test_there_are_tests_to_read():
    modules = _test_modules()
    assert len(modules) > 80 and sum(len(list(collected_tests(m))) for m in modules) > 500
    assert any(m.path == Path(__file__) for m in modules)


def test_every_test_checks_on_every_path():
    checker = Checker(_tree())
    found = [line for module in _test_modules() for line in unchecked(checker, module)]
    assert found == [], "tests that can pass without checking anything:\n" + "\n".join(found)


def test_no_test_skips_on_its_own():
    found = [line for module in _tree().values() for line in skips(module)]
    assert found == [], "skips outside tests/system.py (use tests.system.require):\n" + "\n".join(found)


def test_tests_system_is_the_one_place_that_skips():
    system = _tree()["tests.system"]
    assert system.path == ALLOWED_TO_SKIP
    assert any(isinstance(n, ast.Call) and _dotted(n.func) == "pytest.skip" for n in ast.walk(system.tree))
    # and require, which fails in CI only when something is missing, is no check
    assert not Checker(_tree()).helper_checks(system, system.functions["require"])


# ---------------------------------------------------------------------------------------------------------------
# The rules on snippets: each flags a bad test and passes its good twin (so the check itself can fail).

HELPERS = '''
import pytest

def assert_positive(x):
    assert x > 0

def check_rows(rows):
    assert rows
    for r in rows:
        assert r

def maybe(missing):
    if missing is None:
        return
    pytest.fail(missing)

def loop_only(rows):
    for r in rows:
        assert r
'''


def _found(source: str, helpers: str = HELPERS) -> list[str]:
    modules = {"tests.helpers": parse_module("tests.helpers", textwrap.dedent(helpers), Path("tests/helpers.py")),
               "tests.unit.test_snippet": parse_module("tests.unit.test_snippet", textwrap.dedent(source),
                                                       Path("tests/unit/test_snippet.py"))}
    checker = Checker(modules)
    return unchecked(checker, modules["tests.unit.test_snippet"])


def _case(bad: str, good: str) -> tuple[str, str]:
    return textwrap.dedent(bad), textwrap.dedent(good)


BAD_AND_GOOD = {
    "no check at all": _case('''
        def test_x():
            run()
        ''', '''
        def test_x():
            assert run() == 1
        '''),
    "the error swallowed": _case('''
        def test_x():
            try:
                assert read(b'')
            except ValueError:
                pass
        ''', '''
        import pytest
        def test_x():
            with pytest.raises(ValueError):
                read(b'')
        '''),
    "a handler that fails the test": _case('''
        def test_x():
            try:
                assert read(b'')
            except ValueError:
                print('unreadable')
        ''', '''
        import pytest
        def test_x():
            try:
                assert read(b'')
            except ValueError as e:
                pytest.fail(str(e))
        '''),
    "checks only if within": _case('''
        def test_x():
            within = run()
            if within:
                assert within[0] > 1
        ''', '''
        def test_x():
            within = run()
            if within:
                assert within[0] > 1
            else:
                assert why() == 'none'
        '''),
    "asserts only in a loop over what may be empty": _case('''
        def test_x():
            for row in run():
                assert row.ok
        ''', '''
        def test_x():
            rows = run()
            assert rows
            for row in rows:
                assert row.ok
        '''),
    "a loop over a literal runs": _case('''
        def test_x():
            for name in names():
                assert run(name)
        ''', '''
        def test_x():
            for name in ('a', 'b'):
                assert run(name)
        '''),
    "an early return before the check": _case('''
        def test_x():
            got = run()
            if got is None:
                return
            assert got == 2
        ''', '''
        def test_x():
            got = run()
            assert got is not None
            assert got == 2
        '''),
    "a helper that checks, imported": _case('''
        from tests.helpers import loop_only
        def test_x():
            loop_only(run())
        ''', '''
        from tests.helpers import check_rows
        def test_x():
            check_rows(run())
        '''),
    "a helper that checks only sometimes is no check": _case('''
        from tests.helpers import maybe
        def test_x():
            maybe(None)
            run()
        ''', '''
        from tests.helpers import assert_positive
        def test_x():
            assert_positive(run())
        '''),
    "a helper in the module, nested or a method": _case('''
        def helper(x):
            print(x)
        class TestX:
            def test_x(self):
                helper(run())
        ''', '''
        class TestX:
            def _check(self, x):
                assert x
            def test_x(self):
                def inner(y):
                    assert y
                inner(run())
                self._check(run())
        '''),
    "an outside name that checks by its name": _case('''
        import numpy as np
        def test_x():
            np.testing.allclose(run(), 1)
        ''', '''
        import numpy as np
        def test_x():
            np.testing.assert_allclose(run(), 1)
        '''),
    "check_ outside tests is no check": _case('''
        import subprocess
        def test_x():
            subprocess.check_output(['true'])
        ''', '''
        import subprocess
        def test_x():
            assert subprocess.check_output(['echo', 'x']) == b'x\\n'
        '''),
    "a module import of tests": _case('''
        import tests.helpers as h
        def test_x():
            h.loop_only(run())
        ''', '''
        import tests.helpers as h
        def test_x():
            h.assert_positive(run())
        '''),
    "a check only when one row happened to win": _case('''
        def test_x():
            q = run()
            assert q.rows
            if q.variant == 'int8':
                assert q.act == 'uint8'
        ''', '''
        def test_x():
            q = run()
            assert q.rows
            if q.variant == 'int8':
                assert q.act == 'uint8'
            else:
                assert q.act is None
        '''),
    "a guard that leaves is an if/else": _case('''
        def test_x():
            rows = run()
            if not rows:
                assert why() == 'none'
            assert len(rows) < 9
        ''', '''
        def test_x():
            rows = run()
            if not rows:
                assert why() == 'none'
                return
            assert rows[0].ok
        '''),
    "a loop's else runs only when it did not break": _case('''
        def test_x():
            for r in ('a', 'b'):
                if run(r):
                    break
            else:
                assert why()
        ''', '''
        def test_x():
            for r in ('a', 'b'):
                if run(r):
                    continue
                assert why(r)
            else:
                assert why()
        '''),
}


@pytest.mark.parametrize("case", sorted(BAD_AND_GOOD))
def test_rule_1_flags_the_bad_test_and_passes_the_good(case):
    bad, good = BAD_AND_GOOD[case]
    found = _found(bad)
    assert len(found) == 1 and re.match(r"tests/unit/test_snippet\.py:\d+ (TestX\.)?test_x: \S", found[0]), found
    assert _found(good) == [], good


def test_rule_1_says_where_the_check_is_missed():
    def where(case: str) -> str:
        (found,) = _found(BAD_AND_GOOD[case][0])
        return found.removeprefix("tests/unit/test_snippet.py:2 test_x: ")

    assert where("no check at all") == "no check"
    assert where("checks only if within") == "line 4: checks only under `if` with no `else`"
    assert where("asserts only in a loop over what may be empty") == \
        "line 3: checks only inside a `for` over what may be empty"
    assert where("the error swallowed") == "line 5: `except` swallows the error, checking nothing"
    assert where("a check only when one row happened to win") == \
        "line 5: checks only when `q.variant == 'int8'`, nothing otherwise (no `else`)"
    assert where("an early return before the check") == "line 5: returns before any check"


def _skips(source: str, path: Path = Path("tests/unit/test_snippet.py")) -> list[str]:
    return skips(parse_module("tests.unit.test_snippet", textwrap.dedent(source), path))


SKIPS = {
    "pytest.skip": "import pytest\ndef test_x():\n    pytest.skip('no ray')\n",
    "importorskip": "import pytest\ndef test_x():\n    pytest.importorskip('ray')\n",
    "mark.skip": "import pytest\n@pytest.mark.skip(reason='later')\ndef test_x():\n    assert 1\n",
    "mark.xfail": "import pytest\n@pytest.mark.xfail\ndef test_x():\n    assert 0\n",
    "pytestmark skip": "import pytest\npytestmark = pytest.mark.skip\n",
    "from pytest import skip": "from pytest import skip\ndef test_x():\n    skip('x')\n",
    "from pytest import mark": "from pytest import mark\n@mark.skip\ndef test_x():\n    assert 1\n",
    "skipif on a missing package": (
        "import shutil, pytest\n@pytest.mark.skipif(shutil.which('qemu') is None, reason='no qemu')\n"
        "def test_x():\n    assert 1\n"),
    "skipif on the host without a reason": (
        "import platform, pytest\n@pytest.mark.skipif(platform.machine() != 'x86_64')\ndef test_x():\n    assert 1\n"),
}


@pytest.mark.parametrize("case", sorted(SKIPS))
def test_rule_2_flags_every_skip(case):
    assert len(_skips(SKIPS[case])) == 1, _skips(SKIPS[case])


def test_rule_2_passes_require_a_justified_skipif_and_tests_system():
    assert _skips("from tests.system import require\ndef test_x():\n    require(which('qemu'))\n    assert 1\n") == []
    assert _skips("import platform, pytest\n@pytest.mark.skipif(platform.machine().lower() not in ('x86_64',),"
                  " reason='x86 only')\ndef test_x():\n    assert 1\n") == []
    assert _skips("from edgekiln.compiler.evaluate.timing import host_isa\nimport pytest\n"
                  "@pytest.mark.skipif(host_isa()['int8_dot_product'] != 'none', reason='no VNNI')\n"
                  "def test_x():\n    assert 1\n") == []
    assert _skips("import pytest\ndef require(m):\n    pytest.skip(m)\n", ALLOWED_TO_SKIP) == []
