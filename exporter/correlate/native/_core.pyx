# cython: language_level=3
"""provex's native correlation core: the per-event path of exporter/correlate in Cython.

The Python modules are the reference, and this file ports them section by section, with
their names, so a reader can hold one beside the other:

  * graph     exporter/correlate/graph.py      ProvenanceGraph: per-process and per-container
                                               state, origins by identity, window and budget
  * resolve   exporter/correlate/provenance.py resolve/walk, host_mount_of, interpreter_program
  * fields    exporter/correlate/fields.py     one getter per rule field (FieldView)
  * rules     exporter/correlate/compile.py    the rule IR that exporter/correlate/native/ir.py
                                               compiles Sigma detections to, evaluated here
  * sequences exporter/correlate/sequence.py   event_count, value_count, temporal(_ordered)

`Core.add(event)` annotates the event (resolved_path, resolution, host_path,
interpreted_path, resolved_source, origin, carrier) and returns the rule matches (None when
there is none); Python builds alerts from them (exporter/correlate/native/engine.py). State
lives in C structs and typed classes; events and evidence stay the model's Python records.
tests/correlate/test_native_differential.py runs both on the same streams and compares every
annotation and alert.
"""

cimport cython
from cpython.ref cimport PyObject

from collections import OrderedDict, deque

from exporter.correlate import provenance as _provenance
from exporter.model import (
    ContainerInfo,
    Event,
    EventType,
    EvidenceRef,
    FileRef,
    HostMount,
    PodInfo,
    ProcessInfo,
    Resolution,
)
from exporter.model import linux as _linux

cdef extern from *:
    """
    #ifndef PROVEX_CORE_SOURCE
    #define PROVEX_CORE_SOURCE "unknown"
    #endif
    """
    const char* PROVEX_CORE_SOURCE

SOURCE_DIGEST = PROVEX_CORE_SOURCE.decode()

# ---------------------------------------------------------------- the model's records, by slot
#
# Events and their parts are msgspec Structs: each field is a member slot at a fixed offset.
# A generic getattr from C costs ~30-80 ns a field (it cannot use the interpreter's
# specialised attribute access), and an event needs dozens: the core reads and writes the
# slots directly instead, at offsets taken from the types' own member descriptors at import,
# and only on objects whose type is exactly the model's (checked per object; anything else
# goes through getattr). A value written this way is a str, int or bool, which msgspec's
# garbage-collector bookkeeping does not care about; lists (Event.origin) go through setattr.

cdef extern from *:
    """
    #include <structmember.h>
    static Py_ssize_t provex_member_offset(PyObject *descr) {
        PyMemberDef *m;
        if (Py_TYPE(descr) != &PyMemberDescr_Type) return -1;
        m = ((PyMemberDescrObject *)descr)->d_member;
        if ((m->type != T_OBJECT_EX && m->type != T_OBJECT) || (m->flags & READONLY)) return -1;
        return m->offset;
    }
    static inline PyObject *provex_slot(PyObject *o, Py_ssize_t off) {
        return *(PyObject **)((char *)o + off);
    }
    static inline void provex_set_slot(PyObject *o, Py_ssize_t off, PyObject *v) {
        PyObject **p = (PyObject **)((char *)o + off);
        PyObject *old = *p;
        Py_INCREF(v);
        *p = v;
        Py_XDECREF(old);
    }
    """
    Py_ssize_t provex_member_offset(object descr)
    PyObject* provex_slot(object o, Py_ssize_t off)
    void provex_set_slot(object o, Py_ssize_t off, object v)


# String tests the per-event path makes many times: the same answers as str.startswith,
# str.endswith, `in` and str.rstrip, without a method call (each ~100-500 instructions
# through the C API). Both arguments are str (checked: anything else takes the method).
cdef extern from *:
    """
    static int provex_match_at(PyObject *s, PyObject *p, Py_ssize_t at) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(p), i;
        int ks = PyUnicode_KIND(s), kp = PyUnicode_KIND(p);
        const void *ds = PyUnicode_DATA(s), *dp = PyUnicode_DATA(p);
        if (at < 0 || PyUnicode_GET_LENGTH(s) - at < n) return 0;
        if (ks == kp) return memcmp((const char *)ds + at * ks, dp, (size_t)n * ks) == 0;
        if (kp > ks) return 0;  /* p holds a character s cannot */
        for (i = 0; i < n; i++)
            if (PyUnicode_READ(ks, ds, at + i) != PyUnicode_READ(kp, dp, i)) return 0;
        return 1;
    }
    static int provex_has_pair(PyObject *s, Py_UCS4 a, Py_UCS4 b) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(s), i;
        int k = PyUnicode_KIND(s);
        const void *d = PyUnicode_DATA(s);
        for (i = 0; i + 1 < n; i++)
            if (PyUnicode_READ(k, d, i) == a && PyUnicode_READ(k, d, i + 1) == b) return 1;
        return 0;
    }
    static Py_ssize_t provex_rstrip_len(PyObject *s, Py_UCS4 c) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(s);
        int k = PyUnicode_KIND(s);
        const void *d = PyUnicode_DATA(s);
        while (n > 0 && PyUnicode_READ(k, d, n - 1) == c) n--;
        return n;
    }
    """
    bint provex_match_at(object s, object p, Py_ssize_t at)
    bint provex_has_pair(object s, Py_UCS4 a, Py_UCS4 b)
    Py_ssize_t provex_rstrip_len(object s, Py_UCS4 c)


cdef inline bint starts(object s, str prefix) except -1:
    if type(s) is not str:
        return s.startswith(prefix)
    return provex_match_at(s, prefix, 0)


cdef inline bint ends(object s, str suffix) except -1:
    if type(s) is not str:
        return s.endswith(suffix)
    return provex_match_at(s, suffix, len(<str>s) - len(suffix))


cdef inline bint has_pair(str s, Py_UCS4 a, Py_UCS4 b):
    """(a + b) in s"""
    return provex_has_pair(s, a, b)


cdef inline str rstrip_slash(str s):
    """s.rstrip("/")"""
    cdef Py_ssize_t n = provex_rstrip_len(s, 47)
    return s if n == len(s) else s[:n]


cdef Py_ssize_t _offset(object tp, str name) except -1:
    off = provex_member_offset(tp.__dict__.get(name))
    if off < 0:
        raise ImportError(f"{tp.__name__}.{name} is not a member slot: the core does not know this model")
    return off


cdef inline object slot(object o, Py_ssize_t off):
    cdef PyObject* v = provex_slot(o, off)
    if v == NULL:
        raise AttributeError("a field of a model record was deleted")
    return <object>v


cdef inline object ev(object event, Py_ssize_t off):
    """A field of an Event (its type checked by the caller: Core.add, Graph.add)."""
    return slot(event, off)


cdef inline void set_slot(object event, Py_ssize_t off, object value):
    provex_set_slot(event, off, value)


cdef object EVENT = Event
cdef object CONTAINER_INFO = ContainerInfo
cdef object PROCESS_INFO = ProcessInfo
cdef object FILE_REF = FileRef
cdef object POD_INFO = PodInfo
cdef object HOST_MOUNT = HostMount

cdef Py_ssize_t E_id = _offset(Event, "id")
cdef Py_ssize_t E_type = _offset(Event, "type")
cdef Py_ssize_t E_syscall = _offset(Event, "syscall")
cdef Py_ssize_t E_ts_ns = _offset(Event, "ts_ns")
cdef Py_ssize_t E_pid = _offset(Event, "pid")
cdef Py_ssize_t E_tid = _offset(Event, "tid")
cdef Py_ssize_t E_ppid = _offset(Event, "ppid")
cdef Py_ssize_t E_uid = _offset(Event, "uid")
cdef Py_ssize_t E_gid = _offset(Event, "gid")
cdef Py_ssize_t E_comm = _offset(Event, "comm")
cdef Py_ssize_t E_ret = _offset(Event, "ret")
cdef Py_ssize_t E_path = _offset(Event, "path")
cdef Py_ssize_t E_dirfd = _offset(Event, "dirfd")
cdef Py_ssize_t E_flags = _offset(Event, "flags")
cdef Py_ssize_t E_argv = _offset(Event, "argv")
cdef Py_ssize_t E_fd = _offset(Event, "fd")
cdef Py_ssize_t E_nstype = _offset(Event, "nstype")
cdef Py_ssize_t E_source = _offset(Event, "source")
cdef Py_ssize_t E_target = _offset(Event, "target")
cdef Py_ssize_t E_fstype = _offset(Event, "fstype")
cdef Py_ssize_t E_family = _offset(Event, "family")
cdef Py_ssize_t E_daddr = _offset(Event, "daddr")
cdef Py_ssize_t E_dport = _offset(Event, "dport")
cdef Py_ssize_t E_dest_is_apiserver = _offset(Event, "dest_is_apiserver")
cdef Py_ssize_t E_saddr = _offset(Event, "saddr")
cdef Py_ssize_t E_sport = _offset(Event, "sport")
cdef Py_ssize_t E_peer_pod = _offset(Event, "peer_pod")
cdef Py_ssize_t E_child_pid = _offset(Event, "child_pid")
cdef Py_ssize_t E_source_dirfd = _offset(Event, "source_dirfd")
cdef Py_ssize_t E_file = _offset(Event, "file")
cdef Py_ssize_t E_stdin = _offset(Event, "stdin")
cdef Py_ssize_t E_stdout = _offset(Event, "stdout")
cdef Py_ssize_t E_exe_name = _offset(Event, "exe_name")
cdef Py_ssize_t E_verdict = _offset(Event, "verdict")
cdef Py_ssize_t E_repeats = _offset(Event, "repeats")
cdef Py_ssize_t E_resolve = _offset(Event, "resolve")
cdef Py_ssize_t E_by_runtime = _offset(Event, "by_runtime")
cdef Py_ssize_t E_summary = _offset(Event, "summary")
cdef Py_ssize_t E_resolved_path = _offset(Event, "resolved_path")
cdef Py_ssize_t E_resolution = _offset(Event, "resolution")
cdef Py_ssize_t E_host_path = _offset(Event, "host_path")
cdef Py_ssize_t E_interpreted_path = _offset(Event, "interpreted_path")
cdef Py_ssize_t E_resolved_source = _offset(Event, "resolved_source")
cdef Py_ssize_t E_origin = _offset(Event, "origin")
cdef Py_ssize_t E_carrier = _offset(Event, "carrier")
cdef Py_ssize_t E_container = _offset(Event, "container")
cdef Py_ssize_t E_process = _offset(Event, "process")
cdef Py_ssize_t E_late = _offset(Event, "late")

cdef Py_ssize_t C_id = _offset(ContainerInfo, "id")
cdef Py_ssize_t C_host_mounts = _offset(ContainerInfo, "host_mounts")
cdef Py_ssize_t P_exe = _offset(ProcessInfo, "exe")
cdef Py_ssize_t F_dev = _offset(FileRef, "dev")
cdef Py_ssize_t F_ino = _offset(FileRef, "ino")
cdef Py_ssize_t F_mode = _offset(FileRef, "mode")
cdef Py_ssize_t F_path = _offset(FileRef, "path")
cdef Py_ssize_t M_host_path = _offset(HostMount, "host_path")
cdef Py_ssize_t M_container_path = _offset(HostMount, "container_path")


cdef inline object container_id(object container):
    if type(container) is CONTAINER_INFO:
        return slot(container, C_id)
    return container.id


cdef inline object host_mounts(object container):
    if type(container) is CONTAINER_INFO:
        return slot(container, C_host_mounts)
    return container.host_mounts


cdef inline object process_exe(object process):
    if type(process) is PROCESS_INFO:
        return slot(process, P_exe)
    return process.exe


cdef inline void set_process_exe(object process, str exe) except *:
    if type(process) is PROCESS_INFO:
        provex_set_slot(process, P_exe, exe)
    else:
        process.exe = exe


cdef inline object file_mode(object ref):
    if type(ref) is FILE_REF:
        return slot(ref, F_mode)
    return ref.mode


cdef inline object file_path(object ref):
    if type(ref) is FILE_REF:
        return slot(ref, F_path)
    return ref.path


cdef inline object mount_container_path(object mount):
    if type(mount) is HOST_MOUNT:
        return slot(mount, M_container_path)
    return mount.container_path


cdef inline object mount_host_path(object mount):
    if type(mount) is HOST_MOUNT:
        return slot(mount, M_host_path)
    return mount.host_path

# ---------------------------------------------------------------- constants (exporter.model.linux)

cdef long long O_ACCMODE = _linux.O_ACCMODE
cdef long long O_WRONLY = _linux.O_WRONLY
cdef long long O_RDWR = _linux.O_RDWR
cdef long long O_CREAT = _linux.O_CREAT
cdef long long O_TRUNC = _linux.O_TRUNC
cdef long long O_NOFOLLOW = _linux.O_NOFOLLOW
cdef long long O_CLOEXEC = _linux.O_CLOEXEC
cdef long long AT_FDCWD = _linux.AT_FDCWD
cdef long long AT_SYMLINK_FOLLOW = _linux.AT_SYMLINK_FOLLOW
cdef long long AT_EMPTY_PATH = _linux.AT_EMPTY_PATH
cdef long long AF_INET = _linux.AF_INET
cdef long long AF_INET6 = _linux.AF_INET6
cdef long long EINPROGRESS = _linux.EINPROGRESS
cdef long long MS_BIND = _linux.MS_BIND

# graph.py's and provenance.py's bounds (tests/correlate/test_native_differential.py checks
# they are the same numbers).
cdef enum:
    METRIC_EVERY = 1024  # events between window sweeps
    MAX_FDS = 256
    MAX_WRITES = 32
    MAX_LINKS = 4096
    MAX_HISTORY = 16
    MAX_WAITING = 64
    MAX_LINK_HOPS = 40

BOUNDS = {
    "METRIC_EVERY": METRIC_EVERY, "MAX_FDS": MAX_FDS, "MAX_WRITES": MAX_WRITES,
    "MAX_LINKS": MAX_LINKS, "MAX_HISTORY": MAX_HISTORY, "MAX_WAITING": MAX_WAITING,
    "MAX_LINK_HOPS": MAX_LINK_HOPS,
}
cdef long long S_IFMT = 0o170000
cdef long long S_IFIFO = 0o010000
cdef long long S_IFSOCK = 0o140000
cdef long long RESOLVE_IN_ROOT_OR_BENEATH = 0x08 | 0x10

# Event types as small ints (EventType members map here; an unknown one is -1: no handler).
cdef enum:
    T_EXEC, T_OPEN, T_MOUNT, T_SETNS, T_UNSHARE, T_CONNECT, T_ACCEPT, T_FORK, T_EXIT
    T_CHDIR, T_CHROOT, T_LINK, T_RENAME, T_DUP, T_CONTEXT, T_SUMMARY, N_TYPES

cdef object M_EXEC = EventType.EXEC
cdef object M_OPEN = EventType.OPEN
cdef object M_MOUNT = EventType.MOUNT
cdef object M_SETNS = EventType.SETNS
cdef object M_UNSHARE = EventType.UNSHARE
cdef object M_CONNECT = EventType.CONNECT
cdef object M_ACCEPT = EventType.ACCEPT
cdef object M_FORK = EventType.FORK
cdef object M_EXIT = EventType.EXIT
cdef object M_CHDIR = EventType.CHDIR
cdef object M_CHROOT = EventType.CHROOT
cdef object M_LINK = EventType.LINK
cdef object M_RENAME = EventType.RENAME
cdef object M_DUP = EventType.DUP
cdef object M_CONTEXT = EventType.CONTEXT
cdef object M_SUMMARY = EventType.SUMMARY
if len(EventType) != N_TYPES:
    raise ImportError("EventType has members the core does not know")


cdef inline int type_code(object t):
    """The member's code, by identity (Enum's __hash__ is Python code: no dict lookup),
    most frequent first; -1 for anything else."""
    if t is M_OPEN:
        return T_OPEN
    if t is M_CONNECT:
        return T_CONNECT
    if t is M_EXEC:
        return T_EXEC
    if t is M_FORK:
        return T_FORK
    if t is M_EXIT:
        return T_EXIT
    if t is M_CHDIR:
        return T_CHDIR
    if t is M_DUP:
        return T_DUP
    if t is M_ACCEPT:
        return T_ACCEPT
    if t is M_LINK:
        return T_LINK
    if t is M_RENAME:
        return T_RENAME
    if t is M_MOUNT:
        return T_MOUNT
    if t is M_SETNS:
        return T_SETNS
    if t is M_UNSHARE:
        return T_UNSHARE
    if t is M_CHROOT:
        return T_CHROOT
    if t is M_CONTEXT:
        return T_CONTEXT
    if t is M_SUMMARY:
        return T_SUMMARY
    return -1


# What a process did that a story tells (graph.py _STEP), by type code.
cdef list STEP_KIND = [None] * N_TYPES
STEP_KIND[T_EXEC] = "executed"
STEP_KIND[T_CONNECT] = "connected"
STEP_KIND[T_ACCEPT] = "accepted"
STEP_KIND[T_SETNS] = "entered-namespace"
STEP_KIND[T_UNSHARE] = "created-namespace"
STEP_KIND[T_MOUNT] = "mounted"
STEP_KIND[T_CHROOT] = "changed-root"
STEP_KIND[T_LINK] = "linked"
STEP_KIND[T_RENAME] = "renamed"

# What the bounds drop (graph.py's GRAPH_EVICTIONS labels), by index.
cdef enum:
    K_PROC, K_FILE, K_LINK, K_FD, K_CONTAINER, K_STEP, N_KINDS
cdef enum:
    C_WINDOW, C_BUDGET, C_GONE, N_CAUSES
cdef tuple KIND_NAMES = ("proc", "file", "link", "fd", "container", "step")
cdef tuple CAUSE_NAMES = ("window", "budget", "gone")

# Resolution outcomes (exporter.model.Resolution), by index.
cdef enum:
    R_RESOLVED, R_ROOT_ASSUMED, R_CWD_UNKNOWN, R_DIRFD_UNKNOWN, R_PIVOTED, R_LINK_LOOP, N_OUTCOMES

cdef list OUTCOME = [
    Resolution.RESOLVED.value, Resolution.ROOT_ASSUMED.value, Resolution.CWD_UNKNOWN.value,
    Resolution.DIRFD_UNKNOWN.value, Resolution.PIVOTED.value, Resolution.LINK_LOOP.value,
]
OUTCOMES = tuple(OUTCOME)

cdef frozenset DIRFD_SYSCALLS = frozenset(_provenance.DIRFD_SYSCALLS)
cdef frozenset HANDLE_SYSCALLS = frozenset({"memfd_create", "open_by_handle_at", "io_uring_open"})
cdef object PROC_SELF = _provenance._PROC_SELF
cdef object _EvidenceRef = EvidenceRef


# ---------------------------------------------------------------- evidence (model.evidence_ref)

cdef inline str endpoint(str ip, object port):
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


cdef object evidence_ref(object event, str step):
    """exporter.model.evidence_ref, field for field."""
    cdef str destination = ""
    cdef str peer = ""
    t = ev(event, E_type)
    daddr = ev(event, E_daddr)
    if daddr and ev(event, E_family) in (2, 10):
        destination = endpoint(daddr, ev(event, E_dport))
    if t is M_ACCEPT and ev(event, E_saddr):
        peer = endpoint(ev(event, E_saddr), ev(event, E_sport))
    is_mount = t is M_MOUNT
    return _EvidenceRef(  # positional, in EVIDENCE_FIELDS order (checked at import)
        ev(event, E_id),
        ev(event, E_ts_ns),
        t,
        ev(event, E_syscall),
        step,
        ev(event, E_pid),
        ev(event, E_resolved_path)
        or (ev(event, E_path) if t is not M_CONNECT and t is not M_ACCEPT else ""),
        ev(event, E_host_path),
        destination,
        peer,
        ev(event, E_source) if is_mount else "",
        ev(event, E_fstype) if is_mount else "",
    )


EVIDENCE_FIELDS = (
    "id", "ts_ns", "type", "syscall", "step", "pid", "path", "host_path", "destination", "peer",
    "source", "fstype",
)
if EvidenceRef.__struct_fields__ != EVIDENCE_FIELDS:
    raise ImportError("EvidenceRef's fields changed: the core builds them positionally")


# ---------------------------------------------------------------- resolve (provenance.py)

cdef list split_path(str path):
    """Path components; "." dropped, ".." kept."""
    return [c for c in path.split("/") if c and c != "."]


cdef inline str join_path(list parts):
    return "/" + "/".join(parts)


cdef object walk(str root, str start, str rel, dict links, long long horizon, bint follow_last):
    """provenance.walk: `rel` from directory `start`, never above `root`, through the known
    links (path -> (content, ts), those at or after `horizon`). None on a link loop."""
    cdef list root_parts = split_path(root)
    cdef Py_ssize_t nroot = len(root_parts)
    cdef list stack = split_path(start)
    if stack[:nroot] != root_parts:
        stack = list(root_parts)
    cdef list pending = split_path(rel)
    pending.reverse()  # a stack: the next component last
    cdef int hops = 0
    cdef str part
    while pending:
        part = pending.pop()
        if part == "..":
            if len(stack) > nroot:
                stack.pop()
            continue
        stack.append(part)
        if links is None or (not pending and not follow_last):
            continue
        hit = links.get(join_path(stack))
        if hit is None or (<tuple>hit)[1] < horizon:
            continue
        target = (<tuple>hit)[0]
        hops += 1
        if hops > MAX_LINK_HOPS:
            return None
        stack.pop()
        if starts(target, "/"):
            stack = list(root_parts)
        more = split_path(target)
        more.reverse()
        pending.extend(more)
    return join_path(stack)


cdef str resolve(object root, object cwd, bint pivoted, str path, object dirfd_path, dict links,
                 long long horizon, bint follow_last, int* status):
    """provenance.resolve: the absolute path inside the container ("" when it cannot be
    resolved), and how (status). dirfd_path None: AT_FDCWD; "": an fd not known."""
    status[0] = R_PIVOTED if pivoted else R_RESOLVED
    if root is None:
        root = "/"
        status[0] = R_ROOT_ASSUMED
    if starts(path, "/"):
        start = root
    elif dirfd_path is not None:
        if not dirfd_path:
            status[0] = R_DIRFD_UNKNOWN
            return ""
        start = dirfd_path
    elif cwd is not None:
        start = cwd
    else:
        status[0] = R_CWD_UNKNOWN
        return ""
    if links is None and start == root and root == "/" and not has_pair(path, 47, 46) and not has_pair(path, 47, 47):
        return rstrip_slash(path) or "/"  # the common case: already canonical ("/." and "//" not in it)
    out = walk(root, start, path, links, horizon, follow_last)
    if out is None:
        status[0] = R_LINK_LOOP
        return ""
    return out


cdef object host_mount_of(str path, object mounts):
    """provenance.host_mount_of: (mount, host path) of the longest matching mount, or None."""
    if not mounts or not starts(path, "/"):
        return None
    best = None
    cdef Py_ssize_t best_len = -1
    cdef str root
    for mount in mounts:
        root = rstrip_slash(mount_container_path(mount)) or "/"
        if (root == "/" or path == root or starts(path, root + "/")) and len(root) > best_len:
            best = mount
            best_len = len(root)
    if best is None:
        return None
    root = rstrip_slash(mount_container_path(best)) or "/"
    rest = path if root == "/" else path[len(root):]
    host_root = mount_host_path(best)
    host = rstrip_slash(host_root) + rest if rest else host_root
    return best, host or "/"


# ---------------------------------------------------------------- interpreters (provenance.py)

cdef class Interp:
    cdef frozenset inline_, with_value, file_option, end, stdin, glued_value, digits_value
    cdef bint program_on_stdin


cdef class InterpTable:
    cdef dict by_name
    cdef list patterns  # (compiled regex, Interp)
    cdef frozenset multicall
    cdef dict found  # basename -> Interp or None, by pattern (bounded)

    def __init__(self, table):
        cdef dict made = {}
        self.found = {}
        self.by_name = {}
        for name, interp in table.by_name.items():
            self.by_name[name] = made.setdefault(id(interp), _interp(interp))
        self.patterns = [(p, made.setdefault(id(i), _interp(i))) for p, i in table.patterns]
        self.multicall = frozenset(table.multicall)

    cdef Interp find(self, str base):
        hit = self.by_name.get(base)
        if hit is not None:
            return <Interp>hit
        hit = self.found.get(base, self)  # names matched against the patterns before
        if hit is not self:
            return <Interp>hit
        hit = None
        for pattern, interp in self.patterns:
            if pattern.fullmatch(base):
                hit = interp
                break
        if len(self.found) >= 4096:
            self.found.clear()
        self.found[base] = hit
        return <Interp>hit


cdef Interp _interp(object spec):
    cdef Interp out = Interp()
    out.inline_ = frozenset(spec.inline)
    out.with_value = frozenset(spec.with_value)
    out.file_option = frozenset(spec.file_option)
    out.end = frozenset(spec.end)
    out.stdin = frozenset(spec.stdin)
    out.glued_value = frozenset(spec.glued_value)
    out.digits_value = frozenset(spec.digits_value)
    out.program_on_stdin = spec.program_on_stdin
    return out


cdef tuple interpreter_program(InterpTable table, str image, list argv, bint by_argv0):
    """provenance.interpreter_program: (operand, from_stdin)."""
    name = argv[0] if by_argv0 and argv else image
    cdef str base = name.rsplit("/", 1)[-1]
    cdef list args = argv[1:]
    if base in table.multicall:
        if not args:
            return "", False
        base = args[0].rsplit("/", 1)[-1]
        args = args[1:]
    cdef Interp interp = table.find(base)
    if interp is None:
        return "", False
    cdef Py_ssize_t i = 0
    cdef Py_ssize_t n = len(args)
    while i < n:
        arg = args[i]
        if arg in interp.end or arg in interp.file_option:
            if i + 1 < n:
                return args[i + 1], False
            return "", interp.program_on_stdin
        if arg in interp.inline_ or inline_cluster(arg, interp):
            return "", False
        if arg in interp.stdin:
            return "", True
        if arg in interp.with_value:
            i += 2
            continue
        if starts(arg, "-") and arg != "-":
            i += 1
            continue
        return ("", interp.program_on_stdin) if arg == "-" else (arg, False)
    return "", interp.program_on_stdin


cdef bint inline_cluster(str arg, Interp interp):
    """provenance._inline_cluster."""
    if not starts(arg, "-") or starts(arg, "--") or len(arg) < 3:
        return False
    cdef Py_ssize_t i = 1
    cdef Py_ssize_t n = len(arg)
    cdef str digits
    while i < n:
        option = "-" + arg[i]
        if option in interp.inline_:
            return True
        if option in interp.with_value or option in interp.glued_value:
            return False
        i += 1
        if option in interp.digits_value:
            digits = "0123456789abcdefABCDEF" if arg[i:i + 1] == "x" else "01234567"
            if arg[i:i + 1] == "x":
                i += 1
            while i < n and arg[i] in digits:
                i += 1
    return False


# ---------------------------------------------------------------- graph state (graph.py)
#
# The state records below are invisible to Python's cyclic garbage collector (no_gc): none
# can reach itself (a process holds its container, fds, refs and events; nothing they hold
# points back), so the collector need not walk the whole graph at every full collection.

@cython.no_gc
@cython.freelist(1024)
cdef class Fd:
    cdef readonly str path  # resolved, "" when not known
    cdef readonly bint cloexec
    cdef readonly object write  # EvidenceRef of the open that made it writable, or None
    cdef readonly object identity  # (dev, ino) or None



cdef inline Fd new_fd(str path, bint cloexec, object write, object identity):
    cdef Fd fd = Fd.__new__(Fd)
    fd.path = path
    fd.cloexec = cloexec
    fd.write = write
    fd.identity = identity
    return fd


@cython.no_gc
@cython.freelist(1024)
cdef class Step:
    cdef readonly long long ts
    cdef readonly str kind
    cdef readonly str target
    cdef readonly str event_id



cdef inline Step new_step(long long ts, str kind, str target, str event_id):
    cdef Step step = Step.__new__(Step)
    step.ts = ts
    step.kind = kind
    step.target = target
    step.event_id = event_id
    return step


@cython.no_gc
@cython.freelist(256)
cdef class Proc:
    """graph.ProcState."""

    cdef readonly object pid  # the event's int (dict key)
    cdef readonly str cid
    cdef readonly object ppid
    cdef readonly object root  # str or None: not known
    cdef readonly object cwd
    cdef readonly bint pivoted
    cdef readonly dict fds  # fd -> Fd, least recently set first
    cdef readonly str exe
    cdef readonly str exe_given
    cdef readonly tuple net  # how it came to hold network data (): it did not
    cdef list wrote  # (path, identity, write ref) before its taint was known, or None
    cdef readonly object stdin  # identity or None
    cdef readonly object stdout
    cdef long long stdout_mode
    cdef readonly list history  # Step, or None
    cdef long long seeded_ns
    cdef readonly long long exited_ns
    cdef readonly long long last_ns
    cdef object container  # the Container registered under cid when last looked up (or None)

    cdef Proc fork(self, object pid, long long ts):
        cdef Proc child = new_proc(pid, self.cid, self.pid, dict(self.fds))
        child.root = self.root
        child.cwd = self.cwd
        child.pivoted = self.pivoted
        child.exe = self.exe
        child.exe_given = self.exe_given
        child.net = self.net
        child.stdin = self.stdin
        child.stdout = self.stdout
        child.stdout_mode = self.stdout_mode
        child.last_ns = ts
        child.container = self.container
        return child

    cdef inline Py_ssize_t size(self):
        return 1 + len(self.fds)


cdef inline Proc new_proc(object pid, str cid, object ppid, dict fds):
    cdef Proc state = Proc.__new__(Proc)
    state.pid = pid
    state.cid = cid
    state.ppid = ppid
    state.fds = fds
    state.exe = ""
    state.exe_given = ""
    state.net = ()
    return state


@cython.no_gc
@cython.freelist(256)
cdef class FileState:
    cdef readonly tuple origin
    cdef readonly long long ts



cdef inline FileState new_file_state(tuple origin, long long ts):
    cdef FileState state = FileState.__new__(FileState)
    state.origin = origin
    state.ts = ts
    return state


@cython.no_gc
cdef class Container:
    """graph.ContainerState."""

    cdef readonly str cid
    cdef readonly set procs
    cdef readonly dict symlinks  # path -> (content, ts), oldest first
    cdef readonly dict hardlinks  # path -> (identity path, ts)
    cdef readonly dict files  # path -> FileState (network origin)
    cdef readonly dict identities  # identity -> ts, written here
    cdef dict waiting  # identity -> [(event, carrier)]
    cdef dict readers  # identity -> [pid]
    cdef readonly long long last_ns
    cdef readonly Py_ssize_t usage
    cdef long long seq  # Graph.seq at its last activity: its place in least-recently-active order
    cdef bint gone  # no longer registered in Graph.containers (swept or forgotten)

    def __cinit__(self, str cid, long long last_ns):
        self.cid = cid
        self.procs = set()
        self.symlinks = {}
        self.hardlinks = {}
        self.files = {}
        self.identities = {}
        self.waiting = {}
        self.readers = {}
        self.last_ns = last_ns


cdef inline void move_to_end(dict table, object key, object value):
    """OrderedDict's `table[key] = value; table.move_to_end(key)` on a plain dict."""
    if key in table:
        del table[key]
    table[key] = value


cdef inline object pop_first(dict table):
    """OrderedDict.popitem(last=False)'s key, removed."""
    key = next(iter(table))
    del table[key]
    return key


cdef inline bint is_stream(long long mode):
    return (mode & S_IFMT) == S_IFIFO or (mode & S_IFMT) == S_IFSOCK


cdef inline bint is_own_exe(str path, object pid):
    return path == "/proc/self/exe" or path == "/proc/thread-self/exe" or path == f"/proc/{pid}/exe"


cdef inline str cid_of(object event):
    container = ev(event, E_container)
    return container_id(container) if container is not None else ""


cdef inline object key_of(object ref):
    """FileRef.key: (dev, ino), or None for no file."""
    if ref is None:
        return None
    if type(ref) is FILE_REF:
        return (slot(ref, F_dev), slot(ref, F_ino))
    return ref.key


cdef object step_target(object event, int code):
    """graph._target: what a story step points at."""
    if code == T_OPEN or code == T_EXEC or code == T_LINK or code == T_RENAME or code == T_CHROOT:
        f = ev(event, E_file)
        path = ev(event, E_resolved_path) or ev(event, E_path) or (file_path(f) if f is not None else "")
        return "file:" + path if path else ""
    if code == T_CONNECT:
        daddr = ev(event, E_daddr)
        return "endpoint:" + endpoint(daddr, ev(event, E_dport)) if daddr else "socket:" + ev(event, E_path)
    if code == T_ACCEPT:
        return "endpoint:" + endpoint(ev(event, E_saddr), ev(event, E_sport))
    if code == T_SETNS:
        return f"namespace:{ev(event, E_fd)}:{ev(event, E_nstype):#x}"
    if code == T_UNSHARE:
        return f"namespace:new:{ev(event, E_nstype):#x}"
    if code == T_MOUNT:
        return f"mount:{ev(event, E_target) or ev(event, E_source) or ev(event, E_path)}:{ev(event, E_fstype)}"
    return ""


cdef class Graph:
    """graph.ProvenanceGraph: the state, the annotations, the bounds. Field for field and
    method for method the reference's; `add` is its per-event entry."""

    cdef readonly long long window_ns
    cdef readonly Py_ssize_t max_nodes
    cdef readonly Py_ssize_t max_edges
    cdef readonly long long now_ns
    cdef readonly dict procs  # pid -> Proc
    # cid -> Container. The reference keeps an OrderedDict, least recently active first, and
    # moves a container to the end at each of its events; only the budget's tie-break reads
    # that order (the heaviest container that was least recently active), so here each
    # container carries the sequence number of its last activity instead (Container.seq).
    cdef readonly dict containers
    cdef long long seq
    cdef readonly dict by_identity  # identity -> FileState, oldest first
    cdef long long evictions[N_KINDS][N_CAUSES]  # state dropped, by kind and cause (metrics)
    cdef readonly Py_ssize_t total
    cdef readonly Py_ssize_t steps
    cdef list rejudged
    cdef int since_metrics
    cdef long long outcomes[N_OUTCOMES]
    cdef readonly long long rejudged_total
    cdef InterpTable interpreters

    def __init__(self, double window_s, Py_ssize_t max_nodes, Py_ssize_t max_edges):
        if window_s <= 0 or max_nodes < 16 or max_edges < 16:
            raise ValueError("correlate.window_s must be > 0, max_nodes and max_edges >= 16")
        self.window_ns = <long long>(window_s * 1_000_000_000)
        self.max_nodes = max_nodes
        self.max_edges = max_edges
        self.procs = {}
        self.containers = {}
        self.by_identity = {}
        self.rejudged = []
        self.interpreters = InterpTable(_provenance.interpreters())

    # ---------------------------------------------------------- building

    cpdef add(self, object event):
        """Annotate one event and update the state (ProvenanceGraph.add)."""
        if type(event) is not EVENT:
            raise TypeError(f"expected an exporter.model.Event, got {type(event).__name__}")
        self._add(event, type_code(ev(event, E_type)))

    cdef void _add(self, object event, int code) except *:
        cdef long long ts = ev(event, E_ts_ns)
        if ts > self.now_ns:
            self.now_ns = ts
        cdef Proc state = self._process(event, ts)
        if code == T_OPEN:
            self._on_open(event, state)
        elif code == T_CONNECT:
            self._on_connect(event, state)
        elif code == T_EXEC:
            self._on_exec(event, state)
        elif code == T_FORK:
            self._on_fork(event, state)
        elif code == T_EXIT:
            self._on_exit(event, state)
        elif code == T_CHDIR:
            self._on_chdir(event, state)
        elif code == T_DUP:
            self._on_dup(event, state)
        elif code == T_LINK:
            self._on_link(event, state)
        elif code == T_RENAME:
            self._on_rename(event, state)
        elif code == T_ACCEPT:
            self._on_accept(event, state)
        elif code == T_CHROOT:
            self._on_chroot(event, state)
        elif code == T_MOUNT:
            self._on_mount(event, state)
        elif code == T_CONTEXT:
            self._on_context(event, state)
        if code >= 0 and STEP_KIND[code] is not None:
            self._step(state, event, STEP_KIND[code], code)
        self.since_metrics += 1
        if self.since_metrics >= METRIC_EVERY:
            self.publish()
        elif self.total > self.max_nodes:
            self._evict_budget()

    def take_rejudged(self):
        """Executions whose program's origin was learned since the last call."""
        out = self.rejudged
        self.rejudged = []
        return out

    cdef inline bint has_rejudged(self):
        return len(self.rejudged) > 0

    cdef Proc _process(self, object event, long long ts):
        pid = ev(event, E_pid)
        cdef Proc state = self.procs.get(pid)
        cdef Container container
        if state is None or (state.exited_ns and ts > state.exited_ns):
            if state is not None:
                self._drop_proc(state, C_WINDOW)
            state = new_proc(pid, cid_of(event), ev(event, E_ppid), {})
            self.procs[pid] = state
            container = self._container(state.cid)
            container.procs.add(pid)
            self._grow(container, 1)
        ppid = ev(event, E_ppid)
        if ppid:
            state.ppid = ppid
        state.last_ns = ts
        found = self._registered(state)
        if found is not None:
            (<Container>found).last_ns = ts
            self.seq += 1
            (<Container>found).seq = self.seq
        process = ev(event, E_process)
        if process is not None and process_exe(process) == state.exe_given and state.exe != state.exe_given:
            set_process_exe(process, state.exe)  # the image the graph resolved (a relative or linked exec)
        return state

    cdef inline object _registered(self, Proc state):
        """self.containers.get(state.cid), from the process's cached container while that is
        still the one registered."""
        found = state.container
        if found is not None and not (<Container>found).gone:
            return found
        found = state.container = self.containers.get(state.cid)
        return found

    cdef inline object _event_container(self, object event, Proc state):
        """self.containers.get(the event's container id) (the reference's _cid(event))."""
        cid = cid_of(event)
        if cid == state.cid:
            return self._registered(state)
        return self.containers.get(cid)

    cdef inline void _grow(self, object container, Py_ssize_t n):
        if container is not None:
            (<Container>container).usage += n
            self.total += n

    cdef Container _container(self, str cid):
        found = self.containers.get(cid)
        if found is None:
            found = Container(cid, self.now_ns)
            self.seq += 1
            (<Container>found).seq = self.seq
            self.containers[cid] = found
        return <Container>found

    cdef void _step(self, Proc state, object event, str kind, int code) except *:
        target = step_target(event, code)
        if not target:
            return
        history = state.history
        if history is None:
            history = state.history = []
        history.append(new_step(ev(event, E_ts_ns), kind, target, ev(event, E_id)))
        self.steps += 1
        if len(history) > 2 * MAX_HISTORY:
            self.steps -= len(history) - MAX_HISTORY
            del history[:-MAX_HISTORY]

    # ---------------------------------------------------------- provenance per event type

    cdef void _on_fork(self, object event, Proc parent) except *:
        child_pid = ev(event, E_child_pid)
        old = self.procs.get(child_pid)
        if old is not None:
            self._drop_proc(<Proc>old, C_WINDOW)
        cdef Proc child = parent.fork(child_pid, ev(event, E_ts_ns))
        self.procs[child_pid] = child
        cdef Container container = self._container(child.cid)
        container.procs.add(child_pid)
        self._grow(container, child.size())

    cdef void _on_context(self, object event, Proc state) except *:
        if state.root is None:
            state.root = ev(event, E_target) or "/"
        if state.cwd is None:
            state.cwd = ev(event, E_path) or None
        state.seeded_ns = ev(event, E_ts_ns)

    cdef void _on_exit(self, object event, Proc state) except *:
        if ev(event, E_tid) == ev(event, E_pid):
            state.exited_ns = ev(event, E_ts_ns)
            self._set_fds(state, {})
            state.wrote = None

    cdef void _on_chdir(self, object event, Proc state) except *:
        cdef int status = R_RESOLVED
        cdef str path
        if ev(event, E_syscall) == "fchdir":
            path = self._fd_path(state, ev(event, E_fd))
            status = R_RESOLVED if path else R_DIRFD_UNKNOWN
        else:
            path = self._resolve(event, state, ev(event, E_path), AT_FDCWD, True, &status)
        self._annotate(event, path, status)
        if ev(event, E_ret) == 0 and ev(event, E_ts_ns) >= state.seeded_ns:
            state.cwd = path or None

    cdef void _on_chroot(self, object event, Proc state) except *:
        cdef int status = R_RESOLVED
        cdef str path = self._resolve(event, state, ev(event, E_path), AT_FDCWD, True, &status)
        self._annotate(event, path, status)
        if ev(event, E_ret) != 0 or ev(event, E_ts_ns) < state.seeded_ns:
            return
        if ev(event, E_syscall) == "pivot_root":
            state.root = "/"
            state.cwd = "/"
            state.pivoted = bool(state.exe)
        else:
            state.root = path or None

    cdef void _on_open(self, object event, Proc state) except *:
        cdef long long flags = ev(event, E_flags)
        cdef bint follow = not (flags & O_NOFOLLOW)
        cdef int status = R_RESOLVED
        cdef str path
        if ev(event, E_syscall) in HANDLE_SYSCALLS:
            path = ev(event, E_path)
            status = R_RESOLVED if path else R_DIRFD_UNKNOWN
        else:
            path = self._resolve(event, state, ev(event, E_path), self._dirfd(event), follow, &status)
        self._annotate(event, path, status)
        cdef long long ret = ev(event, E_ret)
        if ret < 0:
            return
        identity = key_of(ev(event, E_file))
        if not path and identity is None:
            return
        cid = state.cid
        write = None
        if flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC):
            write = evidence_ref(event, "write")
            self._step(state, event, "wrote", T_OPEN)
            if identity is not None:
                self._remember_identity(cid, identity)
            if state.net:
                self._set_origin(cid, path, identity, state.net + (write,))
            else:
                wrote = state.wrote
                if wrote is None:
                    wrote = state.wrote = []
                wrote.append((path, identity, write))
                if len(wrote) > MAX_WRITES:
                    del wrote[0]
        elif starts(ev(event, E_verdict), "sensitive"):
            self._step(state, event, "read-sensitive", T_OPEN)
        self._set_fd(state, ev(event, E_ret), new_fd(path, bool(flags & O_CLOEXEC), write, identity))
        if (flags & O_ACCMODE) != O_WRONLY:  # a read: it now holds what the file holds
            origin = self._origin(cid, path, identity)
            if origin and not state.net:
                self._taint(state, origin + (evidence_ref(event, "read"),))

    cdef void _on_connect(self, object event, Proc state) except *:
        cdef long long ret = ev(event, E_ret)
        cdef long long family
        if ret >= 0 or ret == -EINPROGRESS:
            family = ev(event, E_family)
            if family == AF_INET or family == AF_INET6:
                f = ev(event, E_file)
                if f is None and state.net:
                    return  # nothing would change (the reference builds the ref and drops it)
                how = (evidence_ref(event, "connect"),)
                if f is not None:
                    self._carrier_origin(state.cid, key_of(f), how)
                if not state.net:
                    self._taint(state, how)

    cdef void _on_accept(self, object event, Proc state) except *:
        cdef long long family
        if ev(event, E_ret) >= 0:
            family = ev(event, E_family)
            if family == AF_INET or family == AF_INET6:
                f = ev(event, E_file)
                if f is None and state.net:
                    return
                how = (evidence_ref(event, "accept"),)
                if f is not None:
                    self._carrier_origin(state.cid, key_of(f), how)
                if not state.net:
                    self._taint(state, how)

    cdef void _on_exec(self, object event, Proc state) except *:
        cdef str path = ev(event, E_path)
        cdef int status = R_RESOLVED
        cdef str resolved
        pid = ev(event, E_pid)
        cdef bint own = is_own_exe(path, pid)
        if not path and ev(event, E_flags) & AT_EMPTY_PATH:  # fexecve: the fd is the file
            resolved = self._fd_path(state, ev(event, E_dirfd))
            status = R_RESOLVED if resolved else R_DIRFD_UNKNOWN
        elif state.exe and own:  # re-executing itself (busybox applets)
            resolved = state.exe
        else:
            resolved = self._resolve(event, state, path, self._dirfd(event), True, &status)
        self._annotate(event, resolved, status)
        cdef str image = resolved or path
        exe_name = ev(event, E_exe_name)
        if not image and starts(exe_name, "memfd:"):
            image = "/" + exe_name
        cid = state.cid
        operand, from_stdin = interpreter_program(self.interpreters, image, ev(event, E_argv), own)
        cdef tuple origin = ()
        cdef str carrier = "file"
        cdef int script_status = R_RESOLVED
        stdin = ev(event, E_stdin)
        if operand:
            script = self._resolve(event, state, operand, AT_FDCWD, True, &script_status)
            set_slot(event, E_interpreted_path, script)
            origin = self._origin(cid, script, None)
        elif from_stdin:
            stdin_fd = state.fds.get(0)
            if (
                stdin_fd is not None
                and (<Fd>stdin_fd).path
                and (stdin is None or (<Fd>stdin_fd).identity is None
                     or (<Fd>stdin_fd).identity == key_of(stdin))
            ):
                set_slot(event, E_interpreted_path, (<Fd>stdin_fd).path)
            identity = (
                key_of(stdin) if stdin is not None
                else ((<Fd>stdin_fd).identity if stdin_fd is not None else None)
            )
            origin = self._origin(cid, ev(event, E_interpreted_path), identity)
            if stdin is not None and is_stream(file_mode(stdin)):
                carrier = "socket" if (file_mode(stdin) & S_IFMT) == S_IFSOCK else "pipe"
                if not origin and ev(event, E_ret) == 0:
                    self._wait_for_origin(cid, key_of(stdin), event, carrier)
        if not origin:
            origin = self._origin(cid, resolved, key_of(ev(event, E_file)))
            carrier = "memfd" if starts(exe_name, "memfd:") else "file"
        if origin:
            event.origin = list(origin)
            set_slot(event, E_carrier, carrier)
        else:
            if ev(event, E_origin):
                event.origin = []
            if ev(event, E_carrier):
                set_slot(event, E_carrier, "")
        if ev(event, E_ret) == 0:
            for fd in [fd for fd, entry in state.fds.items() if (<Fd>entry).cloexec]:
                self._drop_fd(state, fd)
            state.exe = image
            state.exe_given = path
            process = ev(event, E_process)
            if process is not None and starts(image, "/"):
                set_process_exe(process, image)
            if stdin is not None:
                state.stdin = key_of(stdin)
            stdout = ev(event, E_stdout)
            if stdout is not None:
                state.stdout = key_of(stdout)
                state.stdout_mode = file_mode(stdout)
            if stdin is not None and is_stream(file_mode(stdin)) and not state.net:
                self._read_stream(state, key_of(stdin))
            if state.net:
                self._taint_stdout(state)

    cdef void _on_dup(self, object event, Proc state) except *:
        if ev(event, E_ret) < 0:
            return
        hit = state.fds.get(ev(event, E_fd))
        if hit is None:
            self._drop_fd(state, ev(event, E_ret))
        else:
            self._set_fd(
                state,
                ev(event, E_ret),
                new_fd((<Fd>hit).path, bool(ev(event, E_flags) & O_CLOEXEC), (<Fd>hit).write, (<Fd>hit).identity),
            )

    cdef void _on_mount(self, object event, Proc state) except *:
        source = ev(event, E_source) or ev(event, E_path)
        syscall = ev(event, E_syscall)
        bind = syscall == "mount" and ev(event, E_flags) & MS_BIND
        cdef int status = R_RESOLVED
        cdef str path
        if syscall == "open_tree" or bind or starts(source, "/"):
            dirfd = ev(event, E_dirfd) if syscall == "open_tree" else AT_FDCWD
            path = self._resolve(event, state, source, dirfd, True, &status)
            self._annotate(event, path, status)

    cdef void _on_link(self, object event, Proc state) except *:
        cdef int status = R_RESOLVED
        cdef int old_status = R_RESOLVED
        cdef str new = self._resolve(event, state, ev(event, E_path), self._dirfd(event), False, &status)
        self._annotate(event, new, status)
        cdef bint symlink = starts(ev(event, E_syscall), "symlink")
        cdef str old_path
        if symlink:
            old_path = ev(event, E_source)
        else:
            follow = bool(ev(event, E_flags) & AT_SYMLINK_FOLLOW)
            old_path = self._resolve(event, state, ev(event, E_source), self._source_dirfd(event), follow,
                                     &old_status)
            set_slot(event, E_resolved_source, old_path)
        if ev(event, E_ret) != 0 or not new or not old_path:
            return
        cdef Container container = self._container(state.cid)
        if symlink:
            self._remember(container, container.symlinks, new, old_path, ev(event, E_ts_ns))
        else:
            identity = self._hardlink_identity(container, old_path)
            self._remember(container, container.hardlinks, new, identity, ev(event, E_ts_ns))
            origin = self._origin(state.cid, identity, None)
            if origin:
                self._set_origin(state.cid, new, None, origin)

    cdef void _on_rename(self, object event, Proc state) except *:
        cdef int status = R_RESOLVED
        cdef int old_status = R_RESOLVED
        cdef str new = self._resolve(event, state, ev(event, E_path), self._dirfd(event), False, &status)
        cdef str old = self._resolve(event, state, ev(event, E_source), self._source_dirfd(event), False,
                                     &old_status)
        self._annotate(event, new, status)
        set_slot(event, E_resolved_source, old)
        if ev(event, E_ret) != 0 or not new or not old:
            return
        cid = state.cid
        cdef Container container = self._container(cid)
        for table in (container.symlinks, container.hardlinks):
            moved = (<dict>table).pop(old, None)
            replaced = (<dict>table).pop(new, None)
            self._grow(container, -(moved is not None) - (replaced is not None))
            if moved is not None:
                self._remember(container, <dict>table, new, moved[0], ev(event, E_ts_ns))
        origin = self._origin(cid, old, None)
        if origin:
            self._set_origin(cid, new, None, origin + (evidence_ref(event, "rename"),))
            if container.files.pop(old, None) is not None:
                self._grow(container, -1)

    # ---------------------------------------------------------- provenance helpers

    cdef inline object _dirfd(self, object event):
        return ev(event, E_dirfd) if ev(event, E_syscall) in DIRFD_SYSCALLS else AT_FDCWD

    cdef inline object _source_dirfd(self, object event):
        return ev(event, E_source_dirfd) if ev(event, E_syscall) in DIRFD_SYSCALLS else AT_FDCWD

    cdef inline str _fd_path(self, Proc state, object fd):
        hit = state.fds.get(fd)
        return (<Fd>hit).path if hit is not None else ""

    cdef void _set_fd(self, Proc state, object fd, Fd entry) except *:
        fds = state.fds
        if fd in fds:
            del fds[fd]
        else:
            self._grow(self._registered(state), 1)
        fds[fd] = entry
        if len(fds) > MAX_FDS:
            pop_first(fds)
            self._grow(self._registered(state), -1)

    cdef void _drop_fd(self, Proc state, object fd) except *:
        if state.fds.pop(fd, None) is not None:
            self._grow(self._registered(state), -1)

    cdef void _set_fds(self, Proc state, dict fds) except *:
        self._grow(self._registered(state), len(fds) - len(state.fds))
        state.fds = fds

    cdef void _remember(self, Container container, dict table, str path, object value, long long ts) except *:
        if path in table:
            del table[path]
        else:
            self._grow(container, 1)
        table[path] = (value, ts)
        if len(table) > MAX_LINKS:
            pop_first(table)
            self._grow(container, -1)

    cdef str _resolve(self, object event, Proc state, str path, object dirfd, bint follow_last,
                      int* status):
        """ProvenanceGraph._resolve: /proc/self and /dev/fd, openat2's RESOLVE_IN_ROOT and
        RESOLVE_BENEATH, the dirfd, links and hard links."""
        status[0] = R_RESOLVED
        cdef str fd_path
        if starts(path, "/proc/") and ("/exe" in path or "/cwd" in path or "/root" in path or "/fd/" in path):
            # (what provenance.proc_self can match: checked first, the regex costs more)
            special = _provenance.proc_self(path)
            if special is not None and special[0] in ("self", "thread-self", str(ev(event, E_pid))):
                what = special[1]
                rest = special[2]
                if what == "root":
                    path = rest or "/"
                    dirfd = AT_FDCWD
                elif what == "cwd":
                    path = "." + rest
                    dirfd = AT_FDCWD
                elif starts(what, "fd/"):
                    fd = _fd_number(what[3:])
                    fd_path = self._fd_path(state, fd) if fd is not None else ""
                    if not fd_path:
                        status[0] = R_DIRFD_UNKNOWN
                        return ""
                    return self._resolve_ctx(event, state, state.root, state.cwd, state.pivoted, "." + rest,
                                             fd_path, follow_last, status)
        elif starts(path, "/dev/fd/"):
            fd_text, _, rest = path[len("/dev/fd/"):].partition("/")
            if fd_text.isdigit():
                fd = _fd_number(fd_text)
                fd_path = self._fd_path(state, fd) if fd is not None else ""
                if not fd_path:
                    status[0] = R_DIRFD_UNKNOWN
                    return ""
                return self._resolve_ctx(event, state, state.root, state.cwd, state.pivoted, "./" + rest,
                                         fd_path, follow_last, status)
        dirfd_path = None
        cdef long long resolve_flags
        if dirfd != AT_FDCWD:
            resolve_flags = ev(event, E_resolve)
            if not starts(path, "/") or resolve_flags & RESOLVE_IN_ROOT_OR_BENEATH:
                dirfd_path = self._fd_path(state, dirfd)
                if starts(path, "/") and resolve_flags & RESOLVE_IN_ROOT_OR_BENEATH:
                    if not dirfd_path:
                        status[0] = R_DIRFD_UNKNOWN
                        return ""
                    return self._resolve_ctx(event, state, dirfd_path, dirfd_path, state.pivoted, path,
                                             None, follow_last, status)
        cdef str out = self._resolve_ctx(event, state, state.root, state.cwd, state.pivoted, path, dirfd_path,
                                         follow_last, status)
        if out:
            found = self._event_container(event, state)
            if found is not None and (<Container>found).hardlinks:
                out = self._hardlink_identity(<Container>found, out)
        return out

    cdef inline str _resolve_ctx(self, object event, Proc state, object root, object cwd, bint pivoted,
                                 str path, object dirfd_path, bint follow_last, int* status):
        cdef dict links = None
        found = self._event_container(event, state)
        if found is not None and (<Container>found).symlinks:
            links = (<Container>found).symlinks
        return resolve(root, cwd, pivoted, path, dirfd_path, links, self.now_ns - self.window_ns,
                       follow_last, status)

    cdef void _annotate(self, object event, str path, int status) except *:
        set_slot(event, E_resolved_path, path)
        set_slot(event, E_resolution, OUTCOME[status])
        self.outcomes[status] += 1
        container = ev(event, E_container)
        if path and container is not None:
            mounts = host_mounts(container)
            if mounts:
                hit = host_mount_of(path, mounts)
                set_slot(event, E_host_path, hit[1] if hit is not None else "")

    cdef str _hardlink_identity(self, Container container, str path):
        hit = container.hardlinks.get(path)
        if hit is not None and (<tuple>hit)[1] >= self.now_ns - self.window_ns:
            return (<tuple>hit)[0]
        return path

    cdef void _remember_identity(self, str cid, object identity) except *:
        cdef Container container = self._container(cid)
        identities = container.identities
        if identity in identities:
            del identities[identity]
        else:
            self._grow(container, 1)
        identities[identity] = self.now_ns

    cdef tuple _origin(self, str cid, str path, object identity):
        """How a file (by identity, else by path in its container) came from the network."""
        cdef long long horizon = self.now_ns - self.window_ns
        if identity is not None:
            hit = self.by_identity.get(identity)
            if hit is not None and (<FileState>hit).ts >= horizon:
                return (<FileState>hit).origin
        if path:
            found = self.containers.get(cid)
            if found is not None:
                hit = (<Container>found).files.get(path)
                if hit is not None and (<FileState>hit).ts >= horizon:
                    return (<FileState>hit).origin
        return ()

    cdef void _set_origin(self, str cid, str path, object identity, tuple origin) except *:
        cdef Container container
        if path:
            container = self._container(cid)
            files = container.files
            if path in files:
                del files[path]
            else:
                self._grow(container, 1)
            files[path] = new_file_state(origin, self.now_ns)
        if identity is not None:
            self._carrier_origin(cid, identity, origin)

    cdef void _carrier_origin(self, str cid, object identity, tuple origin) except *:
        move_to_end(self.by_identity, identity, new_file_state(origin, self.now_ns))
        if len(self.by_identity) > self.max_nodes:
            pop_first(self.by_identity)
        self._remember_identity(cid, identity)
        found = self.containers.get(cid)
        if found is None:
            return
        cdef Container container = <Container>found
        for event, carrier in container.waiting.pop(identity, ()):
            event.origin = list(origin)
            set_slot(event, E_carrier, carrier)
            self.rejudged.append(event)
            self.rejudged_total += 1
        for pid in container.readers.pop(identity, ()):
            reader = self.procs.get(pid)
            if reader is not None and (<Proc>reader).stdin == identity and not (<Proc>reader).net:
                self._taint(<Proc>reader, origin)

    cdef void _read_stream(self, Proc state, object identity) except *:
        origin = self._origin(state.cid, "", identity)
        if origin:
            self._taint(state, origin)
            return
        readers = self._container(state.cid).readers
        pids = readers.setdefault(identity, [])
        pids.append(state.pid)
        if len(pids) > MAX_WAITING:
            del pids[0]
        if len(readers) > MAX_WAITING:
            pop_first(readers)

    cdef void _wait_for_origin(self, str cid, object identity, object event, str carrier) except *:
        waiting = self._container(cid).waiting
        queue = waiting.setdefault(identity, [])
        queue.append((event, carrier))
        if len(queue) > MAX_WAITING:
            del queue[0]
        if len(waiting) > MAX_WAITING:
            pop_first(waiting)

    cdef void _taint(self, Proc state, tuple how) except *:
        state.net = how
        cdef long long horizon = self.now_ns - self.window_ns
        cid = state.cid
        writes = list(state.wrote) if state.wrote else []
        for fd in (1, 2):
            hit = state.fds.get(fd)
            if hit is not None and (<Fd>hit).write is not None:
                writes.append(((<Fd>hit).path, (<Fd>hit).identity, (<Fd>hit).write))
        for path, identity, write in writes:
            if write.ts_ns >= horizon and not self._origin(cid, path, identity):
                self._set_origin(cid, path, identity, how + (write,))
        state.wrote = None
        self._taint_stdout(state)

    cdef void _taint_stdout(self, Proc state) except *:
        stdout = state.stdout
        if (
            stdout is not None
            and state.net
            and is_stream(state.stdout_mode)
            and not self._origin(state.cid, "", stdout)
        ):
            self._carrier_origin(state.cid, stdout, state.net)

    # ---------------------------------------------------------- bounds

    cdef void _drop_proc(self, Proc state, int cause) except *:
        if self.procs.get(state.pid) is state:
            del self.procs[state.pid]
        found = self._registered(state)
        if found is not None and state.pid in (<Container>found).procs:
            (<Container>found).procs.discard(state.pid)
            self._grow(found, -state.size())
        if state.history:
            self.steps -= len(state.history)
        self._count(K_PROC, cause, 1)

    cdef void _sweep_window(self) except *:
        cdef long long horizon = self.now_ns - self.window_ns
        cdef Container container
        for state in [s for s in self.procs.values() if (<Proc>s).exited_ns and (<Proc>s).exited_ns < horizon]:
            self._drop_proc(<Proc>state, C_WINDOW)
        for identity in _older_states(self.by_identity, horizon):
            del self.by_identity[identity]
        for cid in list(self.containers):
            container = <Container>self.containers[cid]
            for table, kind, how in (
                (container.files, K_FILE, 0),
                (container.symlinks, K_LINK, 1),
                (container.hardlinks, K_LINK, 1),
                (container.identities, K_FILE, 2),
            ):
                old = _older(<dict>table, horizon, how)
                for key in old:
                    del (<dict>table)[key]
                if old:
                    self._grow(container, -len(old))
                    self._count(kind, C_WINDOW, len(old))
            for identity in [i for i, q in container.waiting.items() if q[-1][0].ts_ns < horizon]:
                del container.waiting[identity]
            for identity in [
                i for i, pids in container.readers.items() if not any(p in self.procs for p in pids)
            ]:
                del container.readers[identity]
            if not container.procs and container.last_ns < horizon:
                self._grow(container, -container.usage)
                del self.containers[cid]
                container.gone = True
                self._count(K_CONTAINER, C_WINDOW, 1)

    cdef void _evict_budget(self) except *:
        cdef Py_ssize_t target = self.max_nodes - self.max_nodes // 8
        cdef Container heaviest
        while self.total > target and self.containers:
            heaviest = None
            for c in self.containers.values():
                if heaviest is None or (<Container>c).usage > heaviest.usage or (
                    (<Container>c).usage == heaviest.usage and (<Container>c).seq < heaviest.seq
                ):
                    heaviest = <Container>c
            if not self._shrink(heaviest, max(1, heaviest.usage // 4)):
                break

    cdef Py_ssize_t _shrink(self, Container container, Py_ssize_t want) except -1:
        cdef Py_ssize_t freed = 0
        cdef Proc state
        for table, kind in (
            (container.symlinks, K_LINK),
            (container.hardlinks, K_LINK),
            (container.files, K_FILE),
            (container.identities, K_FILE),
        ):
            while table and freed < want:
                pop_first(<dict>table)
                self._grow(container, -1)
                freed += 1
                self._count(kind, C_BUDGET, 1)
        if freed >= want:
            return freed
        procs = sorted(
            [self.procs[p] for p in container.procs if p in self.procs], key=_by_activity
        )
        for s in procs:
            if freed >= want:
                break
            state = <Proc>s
            if state.exited_ns:
                freed += state.size()
                self._drop_proc(state, C_BUDGET)
        for s in procs:
            if freed >= want:
                break
            state = <Proc>s
            if not state.exited_ns and self.procs.get(state.pid) is state and state.fds:
                freed += len(state.fds)
                self._count(K_FD, C_BUDGET, len(state.fds))
                self._set_fds(state, {})
        for s in procs:
            if freed >= want:
                break
            state = <Proc>s
            if self.procs.get(state.pid) is state:
                freed += state.size()
                self._drop_proc(state, C_BUDGET)
        return freed

    def forget_container(self, str cid):
        """The container is gone (its cgroup was removed)."""
        container = self.containers.pop(cid, None)
        if container is None:
            return
        (<Container>container).gone = True
        self.total -= (<Container>container).usage
        for pid in (<Container>container).procs:
            state = self.procs.get(pid)
            if state is not None and (<Proc>state).cid == cid:
                del self.procs[pid]
        self._count(K_CONTAINER, C_GONE, 1)

    cdef inline void _count(self, int kind, int cause, Py_ssize_t n):
        self.evictions[kind][cause] += n

    @property
    def evicted(self):
        """Evictions by kind (ProvenanceGraph.evicted)."""
        out = {}
        for kind in range(N_KINDS):
            total = sum([self.evictions[kind][cause] for cause in range(N_CAUSES)])
            if total:
                out[KIND_NAMES[kind]] = total
        return out

    cpdef publish(self):
        """Sweep the window and enforce the bounds (ProvenanceGraph.publish, without the
        metrics: Python reads them from `counters`)."""
        self.since_metrics = 0
        self._sweep_window()
        if self.total > self.max_nodes:
            self._evict_budget()
        if self.steps > self.max_edges:
            self._trim_history()

    cdef void _trim_history(self) except *:
        cdef Proc state
        for s in sorted(self.procs.values(), key=_by_activity):
            state = <Proc>s
            if self.steps <= self.max_edges - self.max_edges // 8:
                return
            if state.history:
                self.steps -= len(state.history)
                self._count(K_STEP, C_BUDGET, len(state.history))
                state.history = None

    @property
    def size(self):
        """(state entries, story steps)."""
        return self.total, self.steps

    def counters(self):
        """Cumulative counts for the metrics: resolutions by outcome, evictions by (kind,
        cause), rejudged executions."""
        return (
            {OUTCOME[i]: self.outcomes[i] for i in range(N_OUTCOMES)},
            {
                (KIND_NAMES[kind], CAUSE_NAMES[cause]): self.evictions[kind][cause]
                for kind in range(N_KINDS)
                for cause in range(N_CAUSES)
                if self.evictions[kind][cause]
            },
            self.rejudged_total,
        )

    # ---------------------------------------------------------- lineage

    cpdef object parent(self, object pid):
        state = self.procs.get(pid)
        return (<Proc>state).ppid if state is not None else 0

    cpdef list ancestors(self, object pid, int depth):
        """pid itself, then its parents, nearest first, at most `depth` generations up."""
        cdef list chain = [pid]
        for _ in range(depth):
            ppid = self.parent(chain[-1])
            if not ppid or ppid in chain:
                break
            chain.append(ppid)
        return chain

    cpdef bint is_descendant(self, object pid, object of, int depth=32):
        return of in self.ancestors(pid, depth)

    cpdef bint kin(self, object a, object b, int depth):
        return bool(set(self.ancestors(a, depth)) & set(self.ancestors(b, depth)))

    def process(self, pid):
        return self.procs.get(pid)


cdef object _fd_number(str text):
    """graph._fd_number: the fd a /proc/self/fd/N or /dev/fd/N name gives, or None."""
    if not text.isascii() or not text.isdigit() or len(text) > 10 or (len(text) > 1 and text[0] == "0"):
        return None
    fd = int(text)
    return fd if fd < 2**31 else None


cdef list _older(dict table, long long horizon, int how):
    """Keys of an insertion-ordered table whose time is before the horizon (oldest first):
    how 0: FileState.ts, 1: (value, ts)[1], 2: the value itself."""
    cdef list out = []
    cdef long long when
    for key, value in table.items():
        if how == 0:
            when = (<FileState>value).ts
        elif how == 1:
            when = (<tuple>value)[1]
        else:
            when = value
        if when >= horizon:
            break
        out.append(key)
    return out


cdef list _older_states(dict table, long long horizon):
    return _older(table, horizon, 0)


def _by_activity(Proc state):
    return state.last_ns
