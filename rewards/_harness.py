"""The test harness for Python function problems (HumanEval, MBPP and call formats), run in the sandbox.

A standalone standard-library script: the grader sends it as the job's `main.py`, with the candidate's
program as the scratch file `candidate.py` and the tests on stdin. It runs as two processes:

- The *candidate process* is forked first, before the tests are read. It closes stdin, sends its
  prints to stderr, defines the candidate's program and then serves calls: it receives arguments
  as plain data and returns results as plain data. It never sees the tests or the expected values.
- The *test process* (the job's main process) reads the tests from stdin only after that fork, runs
  them with stand-ins for the candidate's functions that call across the pipe, and alone writes to
  stdout: one JSON line per test, each carrying the nonce the grader put on stdin.

So the verdict is decided where the candidate's code never ran, from data it cannot dress up: a result
crosses the pipe only as None, bool, int, float, str, bytes, complex, or lists, tuples, dicts and sets
of those (exact types, not subclasses), and the test compares that copy. Exiting early, raising
`SystemExit` or `KeyboardInterrupt`, rigged `__eq__`, `atexit` handlers, threads, patched builtins,
`sys.excepthook`, trace hooks, a redefined `check`: all of it happens in the candidate process, which
can at most stop answering (a failed test) or print to stderr. The test process is not dumpable, so
the candidate cannot read or write its memory through /proc, and the sandbox's seccomp filter refuses
ptrace and process_vm_writev.

Stdin (JSON): {"nonce", "format": "humaneval"|"mbpp"|"call", "prompt", "test", "entry_point",
"cases": [[args, kwargs], ...], "stop_on_failure": bool}.
Stdout (JSON lines): {"n": nonce, "total": T, "names": [...]}, then per test {"n", "i", "ok", "kind",
"msg", "input", "got", "expected"}, then {"n", "done": true}.
"""

from __future__ import annotations

import ast
import builtins
import ctypes
import json
import math
import os
import select
import signal
import struct
import sys
from types import CodeType
from typing import Any

PR_SET_DUMPABLE = 4
# Made once where the harness is preloaded (the sandbox's server), so each job inherits them ready.
PRCTL = ctypes.CDLL(None, use_errno=True).prctl
# Signals the candidate (same uid) could send the test process to turn into an exception in the tests.
# SIGKILL and SIGSTOP cannot be blocked: they end in no verdict, which is never a pass.
BLOCKED = (
    signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM,
    signal.SIGPIPE, signal.SIGQUIT, signal.SIGTRAP, signal.SIGVTALRM, signal.SIGPROF, signal.SIGXFSZ,
)  # fmt: skip
MAX_REPLY = 64 << 20


# -- plain data across the pipe -----------------------------------------------------------------------
class Unsendable(TypeError):
    pass


def encode(x: Any, depth: int = 0) -> Any:
    """Exact built-in types only: anything else (a subclass included) cannot cross."""
    if depth > 200:
        raise Unsendable("nested more than 200 levels deep")
    t = type(x)
    if x is None or t is bool or t is str:
        return x
    if t is int:
        return x if -(2**53) < x < 2**53 else {"int": hex(x)}
    if t is float:
        return x if math.isfinite(x) else {"float": repr(x)}
    if t is list:
        return [encode(v, depth + 1) for v in x]
    if t is tuple:
        return {"tuple": [encode(v, depth + 1) for v in x]}
    if t is dict:
        return {"dict": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in x.items()]}
    if t is set or t is frozenset:
        return {t.__name__: [encode(v, depth + 1) for v in x]}
    if t is bytes:
        return {"bytes": x.hex()}
    if t is complex:
        return {"complex": [encode(x.real), encode(x.imag)]}
    raise Unsendable(f"a {t.__module__}.{t.__qualname__} object is not plain data")


def _tagged(d: dict[str, Any]) -> Any:
    if len(d) != 1:
        raise ValueError(f"bad tagged value {list(d)[:3]}")
    ((tag, v),) = d.items()
    if tag == "tuple":
        return tuple(v)
    if tag == "dict":
        return {k: val for k, val in v}
    if tag == "set":
        return set(v)
    if tag == "frozenset":
        return frozenset(v)
    if tag == "int":
        return int(v, 16)
    if tag == "float":
        return float(v)
    if tag == "bytes":
        return bytes.fromhex(v)
    if tag == "complex":
        return complex(*v)
    raise ValueError(f"unknown tag {tag!r}")


def decode(data: bytes) -> Any:
    """A pipe message: messages are JSON arrays, so every JSON object in one is a tagged value."""
    return json.loads(data, object_hook=_tagged)


def untag(x: Any) -> Any:
    """A value as `encode` wrote it (inside a JSON line read with plain `json.loads`) back to Python."""
    if isinstance(x, list):
        return [untag(v) for v in x]
    if isinstance(x, dict):
        return _tagged({k: untag(v) for k, v in x.items()})
    return x


def send(fd: int, obj: object) -> None:
    data = json.dumps(obj).encode()
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def receive_raw(fd: int, limit: int = MAX_REPLY) -> bytes | None:
    header = _read(fd, 4)
    if header is None:
        return None
    (n,) = struct.unpack(">I", header)
    if n > limit:
        raise ValueError(f"a reply of {n} bytes, over the {limit}-byte limit")
    return _read(fd, n)


def _read(fd: int, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


# -- the candidate process ----------------------------------------------------------------------------
def serve_candidate(requests: int, replies: int) -> None:
    """Define the candidate's program, then answer calls until the pipe closes. Never returns."""
    os.close(0)
    os.dup2(2, 1)  # the candidate's prints go to stderr: stdout belongs to the test process
    try:
        with open("candidate.py", encoding="utf-8", errors="surrogateescape") as f:
            source = f.read()
        namespace: dict[str, Any] = {"__name__": "candidate", "__builtins__": __builtins__}
        try:
            code = compile(source, "candidate.py", "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as e:
            send(replies, ["undefined", "compile_error", _describe(e)])
            os._exit(0)
        try:
            exec(code, namespace)
        except BaseException as e:  # SystemExit and KeyboardInterrupt included: a failed definition
            send(replies, ["undefined", "runtime_error", _describe(e)])
            os._exit(0)
        names = [k for k, v in list(namespace.items()) if callable(v) and not k.startswith("__")]
        send(replies, ["defined", names])
        while True:
            raw = receive_raw(requests)
            if raw is None:
                os._exit(0)
            name, args, kwargs = decode(raw)
            reply: list[Any] = []
            try:
                if not callable(namespace.get(name)):
                    raise NameError(f"the program defines no function {name!r}")
                reply = ["ok", encode(namespace[name](*args, **kwargs))]
            except Unsendable as e:
                reply = ["err", "bad_result", f"{name} returned {e}"]
            except BaseException as e:
                reply = ["err", "runtime_error", _describe(e)]
            try:
                send(replies, reply)
            except (TypeError, ValueError, OverflowError) as e:
                send(replies, ["err", "bad_result", f"{name} returned {e}"])
    except BaseException:
        os._exit(1)


def _describe(e: BaseException) -> str:
    try:
        text = f"{type(e).__name__}: {e}"
    except BaseException:
        text = type(e).__name__
    return text[:2000]


# -- the test process ---------------------------------------------------------------------------------
class CandidateError(Exception):
    """The candidate raised, or returned something that is not plain data."""

    def __init__(self, kind: str, msg: str) -> None:
        super().__init__(msg)
        self.kind = kind


class CandidateGone(Exception):
    """The candidate process stopped answering: it exited, or was killed."""


class Harness:
    def __init__(self, pid: int, requests: int, replies: int, nonce: str) -> None:
        self.pid, self.requests, self.replies, self.nonce = pid, requests, replies, nonce
        self.gone: str | None = None
        self.last_call: str | None = None
        self.last_result: object = None

    def emit(self, **fields: object) -> None:
        line = json.dumps({"n": self.nonce, **fields}, default=repr) + "\n"
        os.write(1, line.encode())

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> object:
        if self.gone:
            raise CandidateGone(self.gone)
        self.last_call = _call_text(name, args, kwargs)
        try:
            send(self.requests, [name, encode(list(args)), encode(dict(kwargs))])
        except Unsendable as e:
            raise HarnessError(f"the test passes {e} to {name}, which the harness cannot send") from None
        except OSError:
            raise CandidateGone(self.why_gone()) from None
        try:
            raw = receive_raw(self.replies)
        except ValueError:  # over the size limit: the pipe is out of step, so the candidate is ended
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.gone = "limit:reply"
            raise CandidateError(
                "wrong_answer", f"{name} returned a result over {MAX_REPLY >> 20} MB"
            ) from None
        if raw is None:
            raise CandidateGone(self.why_gone())
        try:
            reply = decode(raw)
            if not isinstance(reply, list) or not reply or reply[0] not in ("ok", "err"):
                raise ValueError("not a reply")
            if reply[0] == "ok":
                self.last_result = reply[1]
                return reply[1]
            kind, msg = str(reply[1]), str(reply[2])
        except (ValueError, TypeError, IndexError, RecursionError, MemoryError) as e:
            raise CandidateError("wrong_answer", f"{name} sent an unreadable result ({e})") from None
        raise CandidateError("wrong_answer" if kind == "bad_result" else "runtime_error", msg)

    def why_gone(self) -> str:
        if self.gone is None:
            _, status = os.waitpid(self.pid, 0)
            if os.WIFSIGNALED(status):
                sig = os.WTERMSIG(status)
                self.gone = f"signal:{sig}"
            else:
                self.gone = f"exit:{os.WEXITSTATUS(status)}"
        return self.gone


class HarnessError(Exception):
    """The tests cannot be run as written (not a verdict on the candidate)."""


def _call_text(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"[:1000]


class Stand:
    """Stands for one of the candidate's functions in the tests."""

    def __init__(self, harness: Harness, name: str) -> None:
        self.harness, self.name = harness, name

    def __call__(self, *args: object, **kwargs: object) -> object:
        return self.harness.call(self.name, args, kwargs)


def statements(test: str, fmt: str) -> tuple[list[ast.stmt], list[ast.stmt], str | None]:
    """The test's setup and its statements, run one by one; for HumanEval the setup is the module around
    `check`, the statements are its body, and the name of its argument comes third."""
    tree = ast.parse(test)
    if fmt == "humaneval":
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == "check" and node.args.args:
                return [n for n in tree.body if n is not node], node.body, node.args.args[0].arg
        raise HarnessError("the test defines no check(candidate) function")
    return [], tree.body, None


def prompt_code(prompt: str) -> CodeType:
    """The prompt compiled; a prompt that ends in a bare signature gets a body so that it compiles."""
    for source in (prompt, prompt.rstrip() + "\n    ...\n"):
        try:
            return compile(source, "prompt.py", "exec", dont_inherit=True)
        except SyntaxError:
            pass
    return compile("", "prompt.py", "exec")


def mentions(node: ast.AST, names: set[str]) -> bool:
    return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(node))


def run_tests(h: Harness, spec: dict[str, Any], names: list[str]) -> None:
    fmt = spec["format"]
    if fmt == "call":
        entry = spec["entry_point"]
        h.emit(total=len(spec["cases"]), names=names)
        if entry not in names:
            for i in range(len(spec["cases"])):
                h.emit(i=i, ok=False, kind="runtime_error", msg=f"the program defines no function {entry!r}")
            return
        for i, (args, kwargs) in enumerate(spec["cases"]):
            try:
                got = h.call(entry, tuple(args), kwargs)
                h.emit(i=i, ok=None, got=encode(got), input=h.last_call)
            except (Unsendable, RecursionError) as e:
                h.emit(
                    i=i, ok=False, kind="wrong_answer", msg=f"an unreadable result ({e})", input=h.last_call
                )
            except CandidateError as e:
                h.emit(i=i, ok=False, kind=e.kind, msg=str(e), input=h.last_call)
            except CandidateGone as e:
                h.emit(i=i, ok=False, kind="gone", msg=str(e), input=h.last_call)
        return
    env: dict[str, Any] = {"__name__": "__test__", "__builtins__": __builtins__}
    if fmt == "humaneval":
        exec(prompt_code(spec["prompt"]), env)  # the prompt's helpers, e.g. encode_cyclic
    setup, body, argname = statements(spec["test"], fmt)
    for node in setup:
        exec(compile(ast.Module([node], []), "test.py", "exec"), env)
    if argname is not None:  # the tests call it as `candidate`, and some by its own name
        env[argname] = env[spec["entry_point"]] = Stand(h, spec["entry_point"])
        counted = {argname, spec["entry_point"]}
    else:  # MBPP: the candidate's functions by name, but never in place of a builtin or of the setup's own
        counted = {n for n in names if n not in env and not hasattr(builtins, n)}
        env.update({n: Stand(h, n) for n in counted})
    tests = [
        node
        for node in body
        if mentions(node, counted) or any(isinstance(n, ast.Assert) for n in ast.walk(node))
    ]
    h.emit(total=len(tests), names=names)
    i, called = 0, False
    stop = spec.get("stop_on_failure", False)
    for node in body:
        is_test = node in tests
        h.last_call, h.last_result = None, None
        failure: dict[str, Any] | None = None
        try:
            exec(compile(ast.Module([node], []), "test.py", "exec"), env)
        except HarnessError:
            raise
        except CandidateGone as e:
            h.emit(i=i, ok=False, kind="gone", msg=str(e), input=h.last_call)
            return
        except CandidateError as e:
            failure = {"kind": e.kind, "msg": str(e)}
        except BaseException as e:  # AssertionError, or the test tripping over a wrong result
            if not (is_test or called):
                raise HarnessError(f"a test statement failed before any call: {_describe(e)}") from e
            failure = {"kind": "wrong_answer", "msg": _describe(e), "got": repr(h.last_result)[:1000]}
            failure["expected"] = _expected(node, env, counted)
        called = called or h.last_call is not None
        if failure is not None:
            h.emit(i=i if is_test else None, ok=False, input=h.last_call, **failure)
            if stop:
                return
        elif is_test:
            h.emit(i=i, ok=True)
        if is_test:
            i += 1


def _expected(node: ast.stmt, env: dict[str, Any], counted: set[str]) -> str | None:
    """For `assert f(x) == y`, what y evaluates to (trusted test code, evaluated in the test process)."""
    if (
        isinstance(node, ast.Assert)
        and isinstance(node.test, ast.Compare)
        and len(node.test.comparators) == 1
    ):
        right = node.test.comparators[0]
        if not mentions(right, counted):
            try:
                return repr(eval(compile(ast.Expression(right), "test.py", "eval"), env))[:1000]
            except BaseException:
                return None
    return None


def main() -> None:
    PRCTL(PR_SET_DUMPABLE, 0, 0, 0, 0)  # no /proc/<pid>/mem, fd or environ for the candidate
    req_r, req_w = os.pipe()
    rep_r, rep_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(req_w)
        os.close(rep_r)
        serve_candidate(req_r, rep_w)
    os.close(req_r)
    os.close(rep_w)
    # The candidate shares our uid: a signal it sends us stays pending, never delivered. One call to
    # block them all costs a job 1.5 ms less than setting twelve handlers to SIG_IGN (a write to a
    # closed pipe, or past the file size limit, fails with an error either way).
    signal.pthread_sigmask(signal.SIG_BLOCK, BLOCKED)
    cwd = os.getcwd()
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != cwd]  # nothing the candidate wrote
    spec = json.loads(sys.stdin.buffer.read())
    h = Harness(pid, req_w, rep_r, spec["nonce"])
    try:
        raw = receive_raw(rep_r)
        hello = decode(raw) if raw is not None else None
    except (ValueError, TypeError, RecursionError):
        hello = None
    if not (
        isinstance(hello, list) and len(hello) >= 2 and hello[0] == "defined" and isinstance(hello[1], list)
    ):
        if isinstance(hello, list) and len(hello) == 3 and hello[1] in ("compile_error", "runtime_error"):
            h.emit(defined=False, kind=hello[1], msg=str(hello[2]))
        else:
            h.emit(defined=False, kind="gone", msg=h.why_gone())
        h.emit(done=True)
        return
    names = [str(n) for n in hello[1]]
    try:
        run_tests(h, spec, names)
    except HarnessError as e:
        h.emit(harness_error=str(e))
    except BaseException as e:
        h.emit(harness_error=_describe(e))
    h.emit(done=True)
    end_candidate(h)


def end_candidate(h: Harness) -> None:
    """Close the candidate's request pipe and give it a moment to exit; then it is killed."""
    if h.gone is not None:
        return
    os.close(h.requests)
    pidfd = os.pidfd_open(h.pid)
    if not select.select([pidfd], [], [], 0.5)[0]:
        os.kill(h.pid, signal.SIGKILL)
    os.waitpid(h.pid, 0)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
