"""Run untrusted Python (model-written code and its tests) in a contained child process.

Containment, from the outside in:

1. A separate process (``python -I -S -B``) in its own session and process group, started from a
   fresh temporary working directory that is deleted afterwards, with an environment scrubbed to
   PATH, LANG and HOME=<that directory>: no secret of the parent passes through.
2. Resource limits set between fork and exec: RLIMIT_CPU (SIGXCPU, then SIGKILL one second
   later), RLIMIT_AS (memory), RLIMIT_FSIZE (also caps captured stdout/stderr, which go to files),
   RLIMIT_NPROC and RLIMIT_CORE = 0.
3. A fresh pids cgroup (cgroup v1 ``pids`` hierarchy, or v2 when its ``pids`` controller is
   delegated) with ``pids.max = nproc``, when the parent may create one. This is what bounds a
   fork bomb when we run as root: the kernel exempts uid 0 from RLIMIT_NPROC.
4. A new, empty network namespace (``unshare(CLONE_NEWNET)`` through libc) when permitted
   (root or CAP_SYS_ADMIN): no interface but a downed loopback, so no connection can be made.
5. A wall-clock timeout after which the whole process group, the cgroup's members and any
   process still in the child's session are sent SIGKILL; this also runs after a normal exit, so
   nothing the candidate started outlives the call.
6. A prelude in the child, installed before the candidate runs: an audit hook
   (``sys.addaudithook``) that refuses process creation (fork, exec, spawn, system, Popen),
   signals to other processes, every socket operation, ctypes, raising resource limits, writes,
   renames, deletions and chdir outside the temporary directory, reading other processes'
   ``/proc`` entries and any process's memory, reading code objects and walking the garbage
   collector's object lists; ``_posixsubprocess``, ``_ctypes`` and the test-only C modules are
   made unimportable; ``os._exit``, ``setsid``/``setpgid`` and the ``dir_fd`` forms of path
   functions are replaced by refusals.
7. A pass report the candidate cannot write. The parent hands the child a random nonce on stdin
   and a pipe; the nonce goes straight into a hidden audit hook, which writes it to the pipe only
   when the harness's own code (hidden tests, or nothing) reaches its last line, run by the
   runner in a namespace of its making. A run passes only with exit status 0 *and* that report,
   so exiting early (``sys.exit(0)``, or the real ``os._exit(0)`` reached somehow) is a failure.

Honest limits: the prelude (6) lives inside the untrusted interpreter. It stops accidents and
ordinary misbehaviour, not a determined attacker, who may find a way around it (e.g. a symlink
swap raced against the path check). Layers 1-5 are the real boundary, and they do not hide the
file system: as root the child can still *read* files the parent can read. Layers 3 and 4 are
used only when the kernel grants them (``containment()`` says which are active); without them,
RLIMIT_NPROC (for non-root users), the prelude and the timeout are what remain. The report (7)
proves the harness ran to its end, not that its assertions mean what they say: code that returns
objects whose ``==`` is always true, or patches a module the tests use, still games the tests
(builtins are restored for the harness). For hostile workloads run the evaluator itself inside
a container or VM.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..errors import SandboxError

_TAIL_CHARS = 2000
_FAILURE_TAG = "pytts-sandbox-failure: "
_CLONE_NEWNET = 0x40000000
_CANDIDATE_FILE = "candidate.py"
_HARNESS_FILE = "harness.py"
_NONCE_BYTES = 32


@dataclass(frozen=True)
class SandboxResult:
    """How one sandboxed run ended.

    ``passed`` is True only when the code (and the harness, if any) ran to completion: no
    exception, no SystemExit, within every limit, and the runner wrote its pass report (a nonce
    the code never sees) after the last statement returned; an exit status of 0 alone is not a
    pass. ``reason`` is "ok", "timeout", "memory", "cpu time limit", "exception: <Type>:
    <message>", "signal <NAME>" (e.g. SIGKILL at the hard CPU limit), "exit status <n>" or
    "no pass report" (exit status 0 that the runner did not give).
    """

    passed: bool
    returncode: int | None
    timed_out: bool
    stdout_tail: str
    stderr_tail: str
    reason: str


@dataclass(frozen=True)
class _Limits:
    timeout_s: float
    cpu_s: int
    memory_mb: int
    fsize_mb: int
    nproc: int


def run_sandboxed(code: str, *, harness: str | None = None, timeout_s: float = 10.0,
                  cpu_s: int = 5, memory_mb: int = 512, fsize_mb: int = 16,
                  nproc: int = 64) -> SandboxResult:
    """Run the Python source ``code`` in a contained child process and report how it ended.

    ``harness`` (e.g. hidden tests) runs after ``code`` in the same namespace, compiled on its
    own, so nothing in ``code`` (an unclosed string, say) can change how the harness parses.

    Blocking (typically one to a few hundred milliseconds); call it from a worker thread in async
    code. ``timeout_s`` is wall time, ``cpu_s`` CPU seconds, ``memory_mb`` the address-space
    cap, ``fsize_mb`` the largest file (and captured output) the child may write, ``nproc`` the
    most tasks (processes and threads) it may hold. Raises SandboxError only when the sandbox
    itself cannot start; anything the code does wrong is a ``passed=False`` result.
    """
    limits = _Limits(float(timeout_s), int(cpu_s), int(memory_mb), int(fsize_mb), int(nproc))
    if limits.timeout_s <= 0 or min(limits.cpu_s, limits.memory_mb, limits.fsize_mb,
                                    limits.nproc) <= 0:
        raise SandboxError(f"sandbox limits must be positive, got {limits}")
    return _run(code, limits, guards=True, harness=harness)


def containment() -> tuple[str, ...]:
    """Names of the containment mechanisms active on this machine, outermost first.

    Always includes "process-group", "rlimits", "timeout-kill" and "audit-prelude"; adds
    "pids-cgroup" and "netns" when the kernel grants them, and "rlimit-nproc" when not root
    (the kernel does not apply RLIMIT_NPROC to uid 0).
    """
    active = ["process-group", "rlimits"]
    if os.geteuid() != 0:
        active.append("rlimit-nproc")
    if _pids_cgroup_available():
        active.append("pids-cgroup")
    if _unshare_netns() is not None:
        active.append("netns")
    active += ["timeout-kill", "audit-prelude"]
    return tuple(active)


# The prelude runs inside the untrusted interpreter before the candidate. It is plain source
# because the child is started with -I -S: no site-packages, no sitecustomize, nothing of ours
# importable, so the guard travels with the command line.
_GUARDS = r'''
def _install_guards():
    import os, posix, sys
    root = os.path.realpath(os.getcwd())
    realpath, fsdecode, devnull = os.path.realpath, os.fsdecode, os.devnull
    own_proc = ("self", "thread-self", str(os.getpid()))
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def refuse(what):
        raise PermissionError(f"pytts sandbox: {what} is not allowed")

    def resolved(path):
        return realpath(fsdecode(path))

    def inside(path):
        if isinstance(path, int):
            return True  # an already-open descriptor; opening it was checked
        full = resolved(path)
        return full == root or full.startswith(root + os.sep) or full == devnull

    refused_prefixes = ("os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn",
                        "os.system", "os.kill", "os.killpg", "os.startfile", "subprocess.",
                        "signal.pthread_kill", "socket.", "ctypes.", "resource.setrlimit",
                        "resource.prlimit", "pty.")
    # event -> positions of path arguments that must stay inside the working directory
    path_events = {"os.chdir": (0,), "os.mkdir": (0,), "os.remove": (0,), "os.rmdir": (0,),
                   "os.rename": (0, 1), "os.link": (0, 1), "os.symlink": (1,),
                   "os.chmod": (0,), "os.chown": (0,), "os.truncate": (0,), "os.utime": (0,),
                   "os.setxattr": (0,), "os.removexattr": (0,), "os.chflags": (0,),
                   "os.lchflags": (0,), "shutil.rmtree": (0,), "shutil.move": (0, 1)}

    # The pass report's secrets live only among the constants of the report hook's code (see
    # _REPORT); code objects and the garbage collector's object lists would reveal them.
    introspection = ("gc.get_objects", "gc.get_referrers", "gc.get_referents")
    code_attributes = ("f_code", "__code__", "gi_code", "cr_code", "ag_code")

    def hook(event, args):
        if event.startswith(refused_prefixes) or event in introspection:
            refuse(event)
        if event == "object.__getattr__" and args[1] in code_attributes:
            refuse(f"reading {args[1]}")
        if event == "open":
            path, flags = args[0], args[2]
            if isinstance(path, int):
                return
            if isinstance(flags, int) and flags & write_flags or (
                    isinstance(args[1], str) and any(c in args[1] for c in "wax+")):
                if not inside(path):
                    refuse(f"writing {fsdecode(path)!r} outside the working directory")
            parts = resolved(path).split(os.sep)
            if len(parts) > 2 and parts[1] == "proc" and parts[2] not in own_proc \
                    and parts[2].isdigit():
                refuse("reading another process's /proc entry")
            if len(parts) > 2 and parts[1] == "proc" and parts[-1] == "mem":
                refuse("reading process memory")
        elif event in path_events:
            for position in path_events[event]:
                if position < len(args) and args[position] is not None \
                        and not inside(args[position]):
                    refuse(f"{event} on {fsdecode(args[position])!r} outside the working "
                           "directory")

    def no_dir_fd(function):
        def guarded(*args, **kwargs):
            for key in ("dir_fd", "src_dir_fd", "dst_dir_fd"):
                if kwargs.get(key) is not None:
                    refuse(f"{function.__name__}({key}=...)")
            return function(*args, **kwargs)
        guarded.__name__ = function.__name__
        return guarded

    def refusal(name):
        def refused(*args, **kwargs):
            refuse(name)
        refused.__name__ = name
        return refused

    # dir_fd paths are relative to a descriptor the audit event does not show, so a write
    # through one could not be located; process-group escapes would dodge the final killpg.
    for module in (os, posix):
        for function in os.supports_dir_fd:
            if getattr(module, function.__name__, None) is function:
                setattr(module, function.__name__, no_dir_fd(function))
        for name in ("_exit", "setsid", "setpgid", "setpgrp", "fork", "forkpty"):
            if hasattr(module, name):
                setattr(module, name, refusal(name))
    for name in ("_posixsubprocess", "_ctypes", "_testcapi", "_testinternalcapi"):
        sys.modules[name] = None
    sys.addaudithook(hook)
'''
_NO_GUARDS = "def _install_guards():\n    pass\n"

# The pass report. A hook that the candidate can neither find nor read writes the nonce to the
# report pipe when, and only when, the harness's own top-level code reaches its last line, run by
# the runner (its caller is the runner's frame) in the namespace the runner registered for it.
# Everything the hook needs sits in one object among its code's constants: the guards refuse
# reading code objects and walking the garbage collector's lists, so a frame of the hook, which
# the candidate might catch (a signal handler, a tracer), shows only the event and its
# arguments. The namespace is registered only while the process has a single thread, so no
# thread of the candidate can swap ``check`` between its definition and its call.
_REPORT = r"""
_REPORT_HOOK = r'''
def report_hook(event, args):
    if event != "pytts.sandbox.harness" and event != "pytts.sandbox.report":
        return
    collecting = "\0s".gc_isenabled()
    "\0s".gc_disable()
    try:
        caller = "\0s".getframe(1)
        if event == "pytts.sandbox.harness":
            if caller is "\0s".main and not "\0s".namespace and "\0s".threads() == 1:
                "\0s".namespace.append(args[0])
        elif "\0s".namespace and caller.f_back is "\0s".main \
                and caller.f_globals is "\0s".namespace[0]:
            "\0s".write("\0s".fd, "\0s".nonce)
    except BaseException:
        pass
    finally:
        if collecting:
            "\0s".gc_enable()
'''


def _install_report(nonce, report_fd, main):
    import _thread, gc, os, sys, types
    if os.path.isdir("/proc/self/task"):
        threads = lambda: len(os.listdir("/proc/self/task"))
    else:
        threads = lambda: _thread._count() + 1
    secrets = types.SimpleNamespace(
        nonce=nonce, fd=report_fd, main=main, namespace=[], threads=threads, write=os.write,
        getframe=sys._getframe, gc_isenabled=gc.isenabled, gc_disable=gc.disable,
        gc_enable=gc.enable)
    module = compile(_REPORT_HOOK, "<pytts-report>", "exec")
    code = next(c for c in module.co_consts if isinstance(c, types.CodeType))
    code = code.replace(co_consts=tuple(secrets if c == "\0s" else c for c in code.co_consts))
    sys.addaudithook(types.FunctionType(code, {"__builtins__": {}}))
"""

# The runner reads the nonce from stdin (the parent writes it there and closes the pipe) and
# hands it to the report hook before anything untrusted runs; its own frames never hold it. It
# then runs the candidate in a fresh ``__main__`` module, and the harness (plus the report line)
# in a copy of that namespace with string keys only and the builtins as they were before the
# candidate ran. Every way of stopping early becomes a non-zero exit with a tagged last line on
# stderr, which the parent turns into ``reason``.
_RUNNER = r"""
import builtins, os, sys, types
%(report)s
%(guards)s

def _read_nonce():
    nonce = b""
    while len(nonce) < %(nonce_bytes)d:
        chunk = os.read(0, %(nonce_bytes)d - len(nonce))
        if not chunk:
            break
        nonce += chunk
    return nonce


def _read(name):
    try:
        with open(name, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


def _main(report_fd):
    # Everything the runner uses after the candidate starts is bound here first and immutable:
    # the candidate can read this frame's locals, and rebind builtins, but not change these.
    exit_now, close, run, build, audit = os._exit, os.close, exec, compile, sys.audit
    exact_type, text, mapping = type, str, dict
    show_exception = sys.__excepthook__
    pristine_builtins = tuple(vars(builtins).items())
    candidate_source = _read(%(candidate)r)
    harness_source = _read(%(harness)r) + '\n__import__("sys").audit("pytts.sandbox.report")\n'

    def fail(kind, describe):
        close(report_fd)
        try:
            message = describe()
        except BaseException:
            message = "(the exception could not be shown)"
        try:
            sys.stderr.write("\n%(tag)s" + kind + ": " + message[:300] + "\n")
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            exit_now(1)

    _install_report(_read_nonce(), report_fd, sys._getframe())
    _install_guards()
    module = types.ModuleType("__main__")
    namespace = module.__dict__
    namespace["__builtins__"] = builtins
    sys.modules["__main__"] = module
    try:
        candidate = build(candidate_source, %(candidate)r, "exec")
        harness = build(harness_source, %(harness)r, "exec")
        run(candidate, namespace)
        checked = {k: v for k, v in namespace.items() if exact_type(k) is text}
        checked["__builtins__"] = mapping(pristine_builtins)
        audit("pytts.sandbox.harness", checked)
        run(harness, checked)
    except BaseException as exc:
        if isinstance(exc, SystemExit):
            fail("SystemExit", lambda: f"the code called exit({exc.code!r}); exiting early "
                                       "counts as failure")
        try:
            show_exception(type(exc), exc, exc.__traceback__)
        except BaseException:
            pass
        fail(type(exc).__name__, lambda: str(exc))
    sys.stdout.flush()
    sys.stderr.flush()
    exit_now(0)
_main(int(sys.argv[1]))
"""


def _runner_source(guards: bool) -> str:
    return _RUNNER % {"report": _REPORT, "guards": _GUARDS if guards else _NO_GUARDS,
                      "nonce_bytes": _NONCE_BYTES, "candidate": _CANDIDATE_FILE,
                      "harness": _HARNESS_FILE, "tag": _FAILURE_TAG}


def _run(code: str, limits: _Limits, *, guards: bool,
         harness: str | None = None) -> SandboxResult:
    """Run ``code``; ``guards=False`` leaves out the in-process prelude (tests use it to check
    that the outer layers contain the code on their own)."""
    workdir = Path(tempfile.mkdtemp(prefix="pytts-sandbox-"))
    cgroup = _PidsCgroup.create(limits.nproc)
    nonce = secrets.token_bytes(_NONCE_BYTES)
    try:
        (workdir / _CANDIDATE_FILE).write_text(code, encoding="utf-8")
        if harness is not None:
            (workdir / _HARNESS_FILE).write_text(harness, encoding="utf-8")
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            returncode, timed_out, report = _spawn_and_wait(workdir, limits, cgroup, out, err,
                                                            _runner_source(guards), nonce)
            stdout_tail, stderr_tail = _tail(out), _tail(err)
    finally:
        if cgroup is not None:
            cgroup.remove()
        shutil.rmtree(workdir, ignore_errors=True)
    reported = report.endswith(nonce)
    passed = returncode == 0 and not timed_out and reported
    reason = _reason(returncode, timed_out, stderr_tail)
    if reason == "ok" and not reported:
        reason = "no pass report"
    return SandboxResult(passed, returncode, timed_out, stdout_tail, stderr_tail, reason)


def _spawn_and_wait(workdir: Path, limits: _Limits, cgroup: _PidsCgroup | None, out: IO[bytes],
                    err: IO[bytes], runner: str, nonce: bytes) -> tuple[int, bool, bytes]:
    """Run the child; return its exit status, whether it timed out, and its pass report."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(workdir)}
    report_read, report_write = os.pipe()
    try:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-B", "-c", runner, str(report_write)], cwd=workdir,
                env=env, stdin=subprocess.PIPE, stdout=out, stderr=err, close_fds=True,
                pass_fds=(report_write,), start_new_session=True,
                preexec_fn=_preexec(limits, cgroup.procs_fd if cgroup else None,
                                    _unshare_netns()))
        except (OSError, subprocess.SubprocessError) as exc:
            raise SandboxError(f"could not start the sandboxed interpreter: {exc}") from exc
        finally:
            os.close(report_write)
        timed_out = False
        try:
            assert proc.stdin is not None
            # The nonce fits a pipe buffer, so this never blocks; a child that died at once
            # just never reads it.
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(nonce)
                proc.stdin.close()
            timed_out = not _wait_unreaped(proc.pid, limits.timeout_s)
        finally:
            # The leader stays an unreaped zombie until here, so its pid, which is also the
            # process-group and session id, cannot be reused by an unrelated process while we
            # kill.
            _kill_everything(proc.pid, cgroup)
            returncode = proc.wait()
        return returncode, timed_out, _drain(report_read)
    finally:
        os.close(report_read)


def _drain(fd: int, limit: int = 1 << 16) -> bytes:
    """What is buffered in the pipe ``fd`` now (at most ``limit`` bytes), without waiting: a
    process the kill missed may still hold the write end open."""
    os.set_blocking(fd, False)
    chunks, size = [], 0
    while size < limit:
        try:
            chunk = os.read(fd, limit - size)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _preexec(limits: _Limits, procs_fd: int | None,
             unshare: Callable[[int], int] | None) -> Callable[[], None]:
    """The function run in the child between fork and exec.

    It only calls C functions bound here in the parent (no imports, no Python-level locks), which
    keeps preexec_fn safe although the evaluator starts sandboxes from several threads.
    """
    setrlimit, write, getpid = resource.setrlimit, os.write, os.getpid
    mb = 1024 * 1024
    rlimits = [(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1)),
               (resource.RLIMIT_AS, (limits.memory_mb * mb,) * 2),
               (resource.RLIMIT_FSIZE, (limits.fsize_mb * mb,) * 2),
               (resource.RLIMIT_CORE, (0, 0)),
               (resource.RLIMIT_NPROC, (limits.nproc,) * 2)]

    def apply() -> None:
        if procs_fd is not None:
            write(procs_fd, str(getpid()).encode())
        if unshare is not None and unshare(_CLONE_NEWNET) != 0:
            raise OSError("unshare(CLONE_NEWNET) failed in the sandbox child")
        for which, values in rlimits:
            setrlimit(which, values)

    return apply


def _wait_unreaped(pid: int, timeout_s: float) -> bool:
    """Wait until ``pid`` exits without reaping it; False when ``timeout_s`` ran out first."""
    deadline = time.monotonic() + timeout_s
    delay = 0.0005
    while True:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.02)


def _kill_everything(leader: int, cgroup: _PidsCgroup | None) -> None:
    try:
        os.killpg(leader, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if cgroup is not None:
        cgroup.kill_members()
    for pid in session_members(leader):
        if pid != leader:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def session_members(sid: int) -> list[int]:
    """Pids of live processes whose session id is ``sid`` (read from /proc; [] elsewhere)."""
    members = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # The command name (field 2) may contain spaces and parentheses; fields after the last
        # ")" are: state ppid pgrp session ...
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 3 and fields[0] != b"Z" and int(fields[3]) == sid:
            members.append(int(entry))
    return members


class _PidsCgroup:
    """A fresh pids cgroup that caps and can kill every task one sandboxed run creates."""

    _ROOTS = ("/sys/fs/cgroup/pids", "/sys/fs/cgroup")

    def __init__(self, path: Path, procs_fd: int) -> None:
        self.path = path
        self.procs_fd = procs_fd

    @classmethod
    def create(cls, max_tasks: int) -> _PidsCgroup | None:
        """A new cgroup limited to ``max_tasks``, or None when no pids hierarchy is writable."""
        for root in map(Path, cls._ROOTS):
            if not os.access(root, os.W_OK):
                continue
            path = root / f"pytts-sandbox-{os.getpid()}-{uuid.uuid4().hex[:12]}"
            try:
                path.mkdir()
            except OSError:
                continue
            try:
                # On cgroup v2 the directory exists without pids.max unless the parent
                # delegates the pids controller; then this root cannot cap anything.
                (path / "pids.max").write_text(str(max_tasks))
                return cls(path, os.open(path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
            except OSError:
                _rmdir_quietly(path)
        return None

    def members(self) -> list[int]:
        try:
            return [int(line) for line in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def kill_members(self) -> None:
        """SIGKILL every member until none is left (a fork racing the kill is caught on the
        next round; pids.max bounds how many rounds there can be)."""
        deadline = time.monotonic() + 5.0
        while (members := self.members()) and time.monotonic() < deadline:
            for pid in members:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.001)

    def remove(self) -> None:
        os.close(self.procs_fd)
        # rmdir fails with EBUSY until killed members are reaped; that takes a moment.
        deadline = time.monotonic() + 2.0
        while self.path.exists() and time.monotonic() < deadline:
            self.kill_members()
            _rmdir_quietly(self.path)
            if self.path.exists():
                time.sleep(0.005)


def _rmdir_quietly(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


@functools.lru_cache(maxsize=1)
def _pids_cgroup_available() -> bool:
    cgroup = _PidsCgroup.create(1)
    if cgroup is None:
        return False
    cgroup.remove()
    return True


@functools.lru_cache(maxsize=1)
def _unshare_netns() -> Callable[[int], int] | None:
    """libc's unshare when this process may create network namespaces, else None.

    Probed once with a real child: permission depends on capabilities and on sysctls
    (e.g. user.max_net_namespaces) that cannot be read off reliably beforehand.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        unshare = ctypes.CDLL(None, use_errno=True).unshare
    except (OSError, AttributeError):
        return None
    unshare.argtypes = [ctypes.c_int]
    unshare.restype = ctypes.c_int

    def probe() -> None:
        if unshare(_CLONE_NEWNET) != 0:
            raise OSError("unshare refused")

    try:
        subprocess.run([sys.executable, "-I", "-S", "-c", "pass"], preexec_fn=probe,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return unshare


def _tail(handle: IO[bytes]) -> str:
    size = handle.seek(0, os.SEEK_END)
    # Read a few bytes more than needed so a multi-byte character cut at the start is dropped,
    # not rendered as a replacement character mid-text.
    handle.seek(max(0, size - 4 * _TAIL_CHARS))
    return handle.read().decode("utf-8", errors="replace")[-_TAIL_CHARS:]


def _reason(returncode: int, timed_out: bool, stderr_tail: str) -> str:
    if timed_out:
        return "timeout"
    if returncode == 0:
        return "ok"
    if returncode < 0:
        number = -returncode
        if number == signal.SIGXCPU:
            return "cpu time limit"
        try:
            return f"signal {signal.Signals(number).name}"
        except ValueError:
            return f"signal {number}"
    tagged = stderr_tail.rfind(_FAILURE_TAG)
    if tagged < 0:
        return f"exit status {returncode}"
    failure = stderr_tail[tagged + len(_FAILURE_TAG):].strip()
    if failure.startswith("MemoryError"):
        return "memory"
    return f"exception: {failure}"

