# cython: language_level=3
"""provex's native correlation core: the per-event path of exporter/correlate in Cython.

The Python modules are the reference, and this file ports them section by section, with
their names, so a reader can hold one beside the other:

  * graph     exporter/correlate/graph.py      ProvenanceGraph: per-process and per-container
                                               state, origins by identity, window and budget
  * resolve   exporter/correlate/provenance.py resolve/walk, host_mount_of, interpreter_program
  * fields    exporter/taxonomy/fields.py      one getter per rule field (FieldView)
  * rules     exporter/correlate/compile.py    the rule IR that exporter/correlate/native/ir.py
                                               compiles Sigma detections to, evaluated here
  * sequences exporter/correlate/sequence.py   event_count, value_count, temporal(_ordered)

`Core.add(event)` annotates the event (resolved_path, resolution, host_path,
interpreted_path, resolved_source, origin, carrier) and returns the rule matches (None when
there is none); Python builds alerts from them (engine.NativeCorrelator). State
lives in C structs and typed classes; events and evidence stay the model's Python records.
tests/correlate/test_native_differential.py runs both on the same streams and compares every
annotation and alert.
"""

cimport cython
from cpython.object cimport Py_TYPE
from cpython.ref cimport Py_INCREF, Py_XDECREF, PyObject
from libc.limits cimport LLONG_MAX

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
    SummaryInfo,
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
    static int provex_equal(PyObject *a, PyObject *b) {
        Py_ssize_t n;
        if (a == b) return 1;
        n = PyUnicode_GET_LENGTH(a);
        if (n != PyUnicode_GET_LENGTH(b) || PyUnicode_KIND(a) != PyUnicode_KIND(b)) return 0;
        return memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), (size_t)n * PyUnicode_KIND(a)) == 0;
    }
    static int provex_has_char(PyObject *s, Py_UCS4 c) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(s), i;
        int k = PyUnicode_KIND(s);
        const void *d = PyUnicode_DATA(s);
        for (i = 0; i < n; i++)
            if (PyUnicode_READ(k, d, i) == c) return 1;
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
    bint provex_equal(str a, str b)
    bint provex_has_char(str s, Py_UCS4 c)
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


# Integers from records become C integers without ever raising: a replayed record may hold
# anything msgspec reads (up to 2**64 - 1, or below -2**63 built in Python). Values that are
# compared (times, return codes, families) saturate at the int64 bounds; flag words keep
# their low 64 bits, which is what a test of small flag bits reads; arithmetic on times
# saturates too. (So a time beyond 2**63 - 1 ns, the year 2262, reads as that bound.)
cdef extern from *:
    """
    static long long provex_i64(PyObject *v) {
        int overflow = 0;
        long long n;
        if (!PyLong_Check(v)) return 0;
        n = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow > 0) return LLONG_MAX;
        if (overflow < 0) return LLONG_MIN;
        return n;
    }
    static long long provex_bits(PyObject *v) {
        if (!PyLong_Check(v)) return 0;
        return (long long)PyLong_AsUnsignedLongLongMask(v);
    }
    static long long provex_sub(long long a, long long b) {
        long long out;
        if (__builtin_sub_overflow(a, b, &out)) return b > 0 ? LLONG_MIN : LLONG_MAX;
        return out;
    }
    """
    long long provex_i64(object v) except? -1
    long long provex_bits(object v) except? -1
    long long sat_sub "provex_sub"(long long a, long long b)


cdef inline long long i64(object v) except? -1:
    """A compared integer (saturating; not an int reads as 0: the model's fields are ints)."""
    return provex_i64(v)


cdef inline long long bits(object v) except? -1:
    """A flag word's low 64 bits."""
    return provex_bits(v)


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


# The Event fields the core reads or writes, in the order of their enum; offsets filled at
# import (an unknown or non-slot name refuses the import: the model changed under the core).
cdef enum:
    E_id, E_type, E_syscall, E_ts_ns, E_pid, E_tid, E_ppid, E_uid, E_gid, E_comm, E_ret,
    E_path, E_dirfd, E_flags, E_argv, E_fd, E_nstype, E_source, E_target, E_fstype, E_option,
    E_family, E_daddr, E_dport, E_dest_is_apiserver, E_saddr, E_sport, E_peer_pod, E_child_pid,
    E_source_dirfd, E_file, E_stdin, E_stdout, E_exe_name, E_verdict, E_repeats, E_resolve,
    E_by_runtime, E_summary, E_resolved_path, E_resolution, E_host_path, E_interpreted_path,
    E_resolved_source, E_origin, E_carrier, E_container, E_process, E_late, N_EVENT_FIELDS

cdef tuple EVENT_FIELDS = (
    "id", "type", "syscall", "ts_ns", "pid", "tid", "ppid", "uid", "gid", "comm", "ret",
    "path", "dirfd", "flags", "argv", "fd", "nstype", "source", "target", "fstype", "option",
    "family", "daddr", "dport", "dest_is_apiserver", "saddr", "sport", "peer_pod", "child_pid",
    "source_dirfd", "file", "stdin", "stdout", "exe_name", "verdict", "repeats", "resolve",
    "by_runtime", "summary", "resolved_path", "resolution", "host_path", "interpreted_path",
    "resolved_source", "origin", "carrier", "container", "process", "late",
)

# The fields of an event's parts (container, Pod, process, file, host mount, summary).
cdef enum:
    CI_id, CI_name, CI_image, CI_runtime, CI_pod, CI_host_mounts,
    PI_uid, PI_name, PI_namespace, PI_service_account, PI_node, PI_ips,
    PR_exe, PR_argv, PR_parent_exe, PR_parent_argv, PR_ancestors, PR_lineage,
    FR_dev, FR_ino, FR_mode, FR_path, FR_host_path, FR_owner, FR_kind, FR_gen,
    HM_host_path, HM_container_path, HM_read_only, SI_kind, SI_count, N_PART_FIELDS

cdef tuple PART_FIELDS = (
    (ContainerInfo, "id"), (ContainerInfo, "name"), (ContainerInfo, "image"),
    (ContainerInfo, "runtime"), (ContainerInfo, "pod"), (ContainerInfo, "host_mounts"),
    (PodInfo, "uid"), (PodInfo, "name"), (PodInfo, "namespace"), (PodInfo, "service_account"),
    (PodInfo, "node"), (PodInfo, "ips"),
    (ProcessInfo, "exe"), (ProcessInfo, "argv"), (ProcessInfo, "parent_exe"),
    (ProcessInfo, "parent_argv"), (ProcessInfo, "ancestors"), (ProcessInfo, "lineage"),
    (FileRef, "dev"), (FileRef, "ino"), (FileRef, "mode"), (FileRef, "path"),
    (FileRef, "host_path"), (FileRef, "owner"), (FileRef, "kind"), (FileRef, "gen"),
    (HostMount, "host_path"), (HostMount, "container_path"), (HostMount, "read_only"),
    (SummaryInfo, "kind"), (SummaryInfo, "count"),
)

cdef Py_ssize_t EV_OFF[N_EVENT_FIELDS]
cdef Py_ssize_t PART_OFF[N_PART_FIELDS]
cdef PyObject* PART_TYPE[N_PART_FIELDS]  # borrowed: the model's types live as long as the module
cdef object EVENT = Event

if len(EVENT_FIELDS) != N_EVENT_FIELDS or len(PART_FIELDS) != N_PART_FIELDS:
    raise ImportError("the core's field tables are inconsistent")
for _i, _name in enumerate(EVENT_FIELDS):
    EV_OFF[_i] = _offset(Event, _name)
for _i, (_type, _name) in enumerate(PART_FIELDS):
    PART_OFF[_i] = _offset(_type, _name)
    PART_TYPE[_i] = <PyObject*>_type


cdef inline object ev(object event, int field):
    """event.<EVENT_FIELDS[field]> (the caller checked that the event is an Event)."""
    return slot(event, EV_OFF[field])


cdef inline void set_ev(object event, int field, object value):
    """event.<field> = value, for a str, int or bool value."""
    provex_set_slot(event, EV_OFF[field], value)


cdef inline object part(object record, int field):
    """record.<PART_FIELDS[field]>: by slot when the record is of the model's type."""
    if <PyObject*>Py_TYPE(record) == PART_TYPE[field]:
        return slot(record, PART_OFF[field])
    return getattr(record, PART_FIELDS[field][1])


cdef inline void set_process_exe(object process, str exe) except *:
    if <PyObject*>Py_TYPE(process) == PART_TYPE[PR_exe]:
        provex_set_slot(process, PART_OFF[PR_exe], exe)
    else:
        process.exe = exe


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
cdef long long S_IFREG = 0o100000
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
    """ip:port, [ip]:port for IPv6 (the port formatted in C when it is a plain int that fits)."""
    cdef long long n
    if type(port) is int and -(2**62) < port < 2**62:
        n = port
        return f"[{ip}]:{n}" if provex_has_char(ip, 58) else f"{ip}:{n}"
    return f"[{ip}]:{port}" if provex_has_char(ip, 58) else f"{ip}:{port}"


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
    """hostmounts.host_mount_of: (mount, host path) of the longest matching mount, or None."""
    if not mounts or not starts(path, "/"):
        return None
    best = None
    cdef Py_ssize_t best_len = -1
    cdef str root
    for mount in mounts:
        root = rstrip_slash(part(mount, HM_container_path)) or "/"
        if (root == "/" or path == root or starts(path, root + "/")) and len(root) > best_len:
            best = mount
            best_len = len(root)
    if best is None:
        return None
    root = rstrip_slash(part(best, HM_container_path)) or "/"
    rest = path if root == "/" else path[len(root):]
    host_root = part(best, HM_host_path)
    host = rstrip_slash(host_root) + rest if rest else host_root
    return best, host or "/"


# ---------------------------------------------------------------- interpreters (provenance.py)

cdef class Interp:
    cdef frozenset inline_, with_value, file_option, end, stdin, glued_value, digits_value
    cdef bint program_on_stdin, operand_is_code


cdef frozenset STDIN_DEVICES = frozenset(
    {"/dev/stdin", "/dev/fd/0", "/proc/self/fd/0", "/proc/thread-self/fd/0"})


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
    out.operand_is_code = spec.operand_is_code
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
                value = args[i + 1]
                if value in STDIN_DEVICES or (value == "-" and arg in interp.file_option):
                    return "", True
                return value, False
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
        if arg == "-":
            return "", interp.program_on_stdin
        if interp.operand_is_code:
            return "", False
        return ("", True) if arg in STDIN_DEVICES else (arg, False)
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
    cdef readonly object ts  # the event's time as recorded (what a story tells)
    cdef readonly str kind
    cdef readonly str target
    cdef readonly str event_id



cdef inline Step new_step(object ts, str kind, str target, str event_id):
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
    cdef readonly object exited_ns  # its exit's time as recorded (what a story tells); 0: alive
    cdef long long exit_t  # the same saturated at int64, as the window compares it
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
    state.exited_ns = 0
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


cdef bint stores_data(str path, object ref) except -1:
    """graph._stores_data: can what one process writes here be read back by another (a
    regular file, pipe, socket or memfd by its type; else a path outside /dev but /dev/shm,
    /proc and /sys)."""
    cdef long long kind
    if ref is not None and part(ref, FR_mode):
        kind = bits(part(ref, FR_mode)) & S_IFMT
        return kind == S_IFREG or kind == S_IFIFO or kind == S_IFSOCK
    return not path.startswith(DEVICE_PATHS) or path.startswith("/dev/shm/")


cdef tuple DEVICE_PATHS = ("/dev/", "/proc/", "/sys/")
cdef frozenset SENSITIVE_KINDS = frozenset({"host_file", "host_dir", "token"})


cdef inline bint is_own_exe(str path, object pid):
    if not provex_match_at(path, "/proc/", 0):
        return False
    return path == "/proc/self/exe" or path == "/proc/thread-self/exe" or path == f"/proc/{pid}/exe"


cdef inline bint owned_by_reader(object owner, object container):
    """fields._owned_by_reader: the reader's Pod (or, its Pod unknown then, its container)."""
    if not owner or container is None:
        return False
    if owner == part(container, CI_id):
        return True
    pod = part(container, CI_pod)
    return pod is not None and owner == part(pod, PI_uid)


cdef inline str cid_of(object event):
    container = ev(event, E_container)
    return part(container, CI_id) if container is not None else ""


cdef inline object key_of(object ref):
    """FileRef.key: (dev, ino, generation), or None for no file."""
    if ref is None:
        return None
    return (part(ref, FR_dev), part(ref, FR_ino), part(ref, FR_gen))


cdef object step_target(object event, int code):
    """graph._target: what a story step points at."""
    if code == T_OPEN or code == T_EXEC or code == T_LINK or code == T_RENAME or code == T_CHROOT:
        f = ev(event, E_file)
        path = ev(event, E_resolved_path) or ev(event, E_path) or (part(f, FR_path) if f is not None else "")
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
    # now_ns: the latest event time as recorded (a story's window is told from it); now_t: the
    # same saturated at int64, which the window's arithmetic compares
    cdef readonly object now_ns
    cdef long long now_t
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
        self.now_ns = 0
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
        exact = ev(event, E_ts_ns)
        cdef long long ts = i64(exact)
        if ts > self.now_t or (ts == self.now_t and ts == LLONG_MAX and exact > self.now_ns):
            self.now_t = ts
            self.now_ns = exact
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
        if state is None or (state.exit_t and (ts > state.exit_t or (
                ts == state.exit_t and ev(event, E_ts_ns) > state.exited_ns))):
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
        if process is not None and part(process, PR_exe) == state.exe_given and state.exe != state.exe_given:
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
            found = Container(cid, self.now_t)
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
        cdef Proc child = parent.fork(child_pid, i64(ev(event, E_ts_ns)))
        self.procs[child_pid] = child
        cdef Container container = self._container(child.cid)
        container.procs.add(child_pid)
        self._grow(container, child.size())

    cdef void _on_context(self, object event, Proc state) except *:
        if state.root is None:
            state.root = ev(event, E_target) or "/"
        if state.cwd is None:
            state.cwd = ev(event, E_path) or None
        state.seeded_ns = i64(ev(event, E_ts_ns))

    cdef void _on_exit(self, object event, Proc state) except *:
        if ev(event, E_tid) == ev(event, E_pid):
            state.exited_ns = ev(event, E_ts_ns)
            state.exit_t = i64(state.exited_ns)
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
        cdef long long flags = bits(ev(event, E_flags))
        cdef bint follow = not (flags & O_NOFOLLOW)
        cdef int status = R_RESOLVED
        cdef str path
        if ev(event, E_syscall) in HANDLE_SYSCALLS:
            path = ev(event, E_path)
            status = R_RESOLVED if path else R_DIRFD_UNKNOWN
        else:
            path = self._resolve(event, state, ev(event, E_path), self._dirfd(event), follow, &status)
        self._annotate(event, path, status)
        cdef long long ret = i64(ev(event, E_ret))
        if ret < 0:
            return
        identity = key_of(ev(event, E_file))
        if not path and identity is None:
            return
        cid = state.cid
        write = None
        # A device keeps nothing of what is written to it (/dev/null is every container's):
        # only files, pipes, sockets and memfds carry data from a writer to a reader.
        cdef bint stores = stores_data(path, ev(event, E_file))
        if flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC):
            write = evidence_ref(event, "write")
            self._step(state, event, "wrote", T_OPEN)
            if identity is not None and stores:
                self._remember_identity(cid, identity)
            if stores and flags & O_TRUNC:
                self._forget_origin(cid, path, identity)  # its content is replaced
            if stores and state.net:
                self._set_origin(cid, path, identity, state.net + (write,))
            elif stores:
                wrote = state.wrote
                if wrote is None:
                    wrote = state.wrote = []
                wrote.append((path, identity, write))
                if len(wrote) > MAX_WRITES:
                    del wrote[0]
        elif starts(ev(event, E_verdict), "sensitive"):
            self._step(state, event, "read-sensitive", T_OPEN)
        if stores:
            self._set_fd(state, ev(event, E_ret), new_fd(path, bool(flags & O_CLOEXEC), write, identity))
        else:
            self._set_fd(state, ev(event, E_ret), new_fd(path, bool(flags & O_CLOEXEC), None, None))
        if (flags & O_ACCMODE) != O_WRONLY and stores:  # a read: it holds what the file holds
            origin = self._origin(cid, path, identity)
            if origin and not state.net:
                self._taint(state, origin + (evidence_ref(event, "read"),))

    cdef void _on_connect(self, object event, Proc state) except *:
        cdef long long ret = i64(ev(event, E_ret))
        cdef long long family
        if ret >= 0 or ret == -EINPROGRESS:
            family = i64(ev(event, E_family))
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
            family = i64(ev(event, E_family))
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
            set_ev(event, E_interpreted_path, script)
            origin = self._origin(cid, script, None)
        elif from_stdin:
            stdin_fd = state.fds.get(0)
            if (
                stdin_fd is not None
                and (<Fd>stdin_fd).path
                and (stdin is None or (<Fd>stdin_fd).identity is None
                     or (<Fd>stdin_fd).identity == key_of(stdin))
            ):
                set_ev(event, E_interpreted_path, (<Fd>stdin_fd).path)
            identity = (
                key_of(stdin) if stdin is not None
                else ((<Fd>stdin_fd).identity if stdin_fd is not None else None)
            )
            origin = self._origin(cid, ev(event, E_interpreted_path), identity)
            if stdin is not None and is_stream(bits(part(stdin, FR_mode))):
                carrier = "socket" if (part(stdin, FR_mode) & S_IFMT) == S_IFSOCK else "pipe"
                if not origin and ev(event, E_ret) == 0:
                    self._wait_for_origin(cid, key_of(stdin), event, carrier)
        if not origin:
            origin = self._origin(cid, resolved, key_of(ev(event, E_file)))
            carrier = "memfd" if starts(exe_name, "memfd:") else "file"
        if origin:
            event.origin = list(origin)
            set_ev(event, E_carrier, carrier)
        else:
            if ev(event, E_origin):
                event.origin = []
            if ev(event, E_carrier):
                set_ev(event, E_carrier, "")
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
                state.stdout_mode = bits(part(stdout, FR_mode))
            if stdin is not None and is_stream(bits(part(stdin, FR_mode))) and not state.net:
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
            set_ev(event, E_resolved_source, old_path)
        if ev(event, E_ret) != 0 or not new or not old_path:
            return
        cdef Container container = self._container(state.cid)
        if symlink:
            self._remember(container, container.symlinks, new, old_path, i64(ev(event, E_ts_ns)))
        else:
            identity = self._hardlink_identity(container, old_path)
            self._remember(container, container.hardlinks, new, identity, i64(ev(event, E_ts_ns)))
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
        set_ev(event, E_resolved_source, old)
        if ev(event, E_ret) != 0 or not new or not old:
            return
        cid = state.cid
        cdef Container container = self._container(cid)
        for table in (container.symlinks, container.hardlinks):
            moved = (<dict>table).pop(old, None)
            replaced = (<dict>table).pop(new, None)
            self._grow(container, -(moved is not None) - (replaced is not None))
            if moved is not None:
                self._remember(container, <dict>table, new, moved[0], i64(ev(event, E_ts_ns)))
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
            resolve_flags = bits(ev(event, E_resolve))
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
        return resolve(root, cwd, pivoted, path, dirfd_path, links, sat_sub(self.now_t, self.window_ns),
                       follow_last, status)

    cdef void _annotate(self, object event, str path, int status) except *:
        set_ev(event, E_resolved_path, path)
        set_ev(event, E_resolution, OUTCOME[status])
        self.outcomes[status] += 1
        container = ev(event, E_container)
        if path and container is not None:
            mounts = part(container, CI_host_mounts)
            if mounts:
                hit = host_mount_of(path, mounts)
                set_ev(event, E_host_path, hit[1] if hit is not None else "")

    cdef str _hardlink_identity(self, Container container, str path):
        hit = container.hardlinks.get(path)
        if hit is not None and (<tuple>hit)[1] >= sat_sub(self.now_t, self.window_ns):
            return (<tuple>hit)[0]
        return path

    cdef void _remember_identity(self, str cid, object identity) except *:
        cdef Container container = self._container(cid)
        identities = container.identities
        if identity in identities:
            del identities[identity]
        else:
            self._grow(container, 1)
        identities[identity] = self.now_t

    cdef tuple _origin(self, str cid, str path, object identity):
        """How a file (by identity, else by path in its container) came from the network."""
        cdef long long horizon = sat_sub(self.now_t, self.window_ns)
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
            files[path] = new_file_state(origin, self.now_t)
        if identity is not None:
            self._carrier_origin(cid, identity, origin)

    cdef void _forget_origin(self, str cid, str path, object identity) except *:
        found = self.containers.get(cid)
        if path and found is not None and (<Container>found).files.pop(path, None) is not None:
            self._grow(<Container>found, -1)
        if identity is not None:
            self.by_identity.pop(identity, None)

    cdef void _carrier_origin(self, str cid, object identity, tuple origin) except *:
        move_to_end(self.by_identity, identity, new_file_state(origin, self.now_t))
        if len(self.by_identity) > self.max_nodes:
            pop_first(self.by_identity)
        self._remember_identity(cid, identity)
        found = self.containers.get(cid)
        if found is None:
            return
        cdef Container container = <Container>found
        for event, carrier in container.waiting.pop(identity, ()):
            event.origin = list(origin)
            set_ev(event, E_carrier, carrier)
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
        cdef long long horizon = sat_sub(self.now_t, self.window_ns)
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
        cdef long long horizon = sat_sub(self.now_t, self.window_ns)
        cdef Container container
        for state in [s for s in self.procs.values() if (<Proc>s).exit_t and (<Proc>s).exit_t < horizon]:
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
            if state.exit_t:
                freed += state.size()
                self._drop_proc(state, C_BUDGET)
        for s in procs:
            if freed >= want:
                break
            state = <Proc>s
            if not state.exit_t and self.procs.get(state.pid) is state and state.fds:
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

    def story(self, evidence, int depth=4):
        """ProvenanceGraph.story: the incident as a networkx graph (exporter/correlate/story.py)."""
        from exporter.correlate.story import build_story, story_graph

        return story_graph(build_story(self, evidence, depth))


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


# ================================================================ fields (fields.py)
#
# One getter per rule field, by id; a View computes each at most once per event (the
# reference's EventView). Fields the core has no getter for (added to fields.py later) are
# computed by the reference's own getter: slower, never different.

from exporter.taxonomy import fields as _fields

cdef enum:
    F_Image, F_CommandLine, F_ParentImage, F_ParentCommandLine, F_User, F_ProcessId,
    F_ParentProcessId, F_TargetFilename, F_DestinationIp, F_DestinationPort, F_SourceIp,
    F_SourcePort, F_Initiated, F_TargetFilenameAsGiven, F_ImageAsGiven, F_PathResolution,
    F_InterpretedFile, F_ExecutedFiles, F_ExecutedFileFromNetwork, F_ProgramCarrier,
    F_ImageKernelName, F_StdinType, F_FileIdentity, F_FileVerdict, F_IsSensitiveFile,
    F_FileRealPath, F_IsOwnSecret, F_IsOtherContainerSecret, F_RepeatCount, F_EventType,
    F_Syscall, F_Comm, F_ThreadId, F_UserId, F_GroupId, F_ReturnCode, F_Success,
    F_AncestorImages, F_OpenFlags, F_OpenWrite, F_OpenCreate, F_OpenTruncate,
    F_DestinationEndpoint, F_DestinationIsApiServer, F_AddressFamily, F_PeerPodName,
    F_PeerPodNamespace, F_PeerPodUid, F_NamespaceType, F_NamespaceTypes, F_NamespaceFd,
    F_MountSource, F_MountTarget, F_MountFsType, F_MountFlags, F_IsContainer, F_ContainerId,
    F_ContainerName, F_ContainerImage, F_ContainerRuntime, F_IsContainerRuntime, F_PodName,
    F_PodNamespace, F_PodUid, F_ServiceAccount, F_NodeName, F_PodIp, F_AncestorProcessId1,
    F_AncestorProcessId2, F_AncestorProcessId3, F_AncestorProcessId4, F_IsHostMount,
    F_HostMountPath, F_HostMountContainerPath, F_HostMountReadOnly, F_IsLate, F_SummaryKind,
    F_SummaryCount, N_NATIVE_FIELDS

NATIVE_FIELDS = (
    "Image", "CommandLine", "ParentImage", "ParentCommandLine", "User", "ProcessId",
    "ParentProcessId", "TargetFilename", "DestinationIp", "DestinationPort", "SourceIp",
    "SourcePort", "Initiated", "TargetFilenameAsGiven", "ImageAsGiven", "PathResolution",
    "InterpretedFile", "ExecutedFiles", "ExecutedFileFromNetwork", "ProgramCarrier",
    "ImageKernelName", "StdinType", "FileIdentity", "FileVerdict", "IsSensitiveFile",
    "FileRealPath", "IsOwnSecret", "IsOtherContainerSecret", "RepeatCount", "EventType",
    "Syscall", "Comm", "ThreadId", "UserId", "GroupId", "ReturnCode", "Success",
    "AncestorImages", "OpenFlags", "OpenWrite", "OpenCreate", "OpenTruncate",
    "DestinationEndpoint", "DestinationIsApiServer", "AddressFamily", "PeerPodName",
    "PeerPodNamespace", "PeerPodUid", "NamespaceType", "NamespaceTypes", "NamespaceFd",
    "MountSource", "MountTarget", "MountFsType", "MountFlags", "IsContainer", "ContainerId",
    "ContainerName", "ContainerImage", "ContainerRuntime", "IsContainerRuntime", "PodName",
    "PodNamespace", "PodUid", "ServiceAccount", "NodeName", "PodIp", "AncestorProcessId1",
    "AncestorProcessId2", "AncestorProcessId3", "AncestorProcessId4", "IsHostMount",
    "HostMountPath", "HostMountContainerPath", "HostMountReadOnly", "IsLate", "SummaryKind",
    "SummaryCount",
)
if len(NATIVE_FIELDS) != N_NATIVE_FIELDS:
    raise ImportError("the core's field table is inconsistent")

cdef enum:
    MAX_FIELDS = 256  # native and reference-computed fields together

cdef object _local_ip = _fields._local_ip
cdef object _is_container_runtime = _fields._is_container_runtime
cdef object _file_type = _fields.file_type
cdef object _namespace_names = _linux.namespace_names
cdef object _normpath = __import__("posixpath").normpath
cdef object UNSET = object()


cdef extern from *:
    """
    /* str.lower() for ASCII text without a method call (and without a copy when it has no
       capital letter); other text takes str.lower itself. */
    static PyObject *provex_lower(PyObject *s) {
        Py_ssize_t n, i;
        const Py_UCS1 *d;
        PyObject *out;
        Py_UCS1 *o;
        if (!PyUnicode_IS_ASCII(s)) return PyObject_CallMethod(s, "lower", NULL);
        n = PyUnicode_GET_LENGTH(s);
        d = PyUnicode_1BYTE_DATA(s);
        for (i = 0; i < n; i++)
            if (d[i] >= 'A' && d[i] <= 'Z') break;
        if (i == n) { Py_INCREF(s); return s; }
        out = PyUnicode_New(n, 127);
        if (out == NULL) return NULL;
        o = PyUnicode_1BYTE_DATA(out);
        for (i = 0; i < n; i++) o[i] = (d[i] >= 'A' && d[i] <= 'Z') ? d[i] + 32 : d[i];
        return out;
    }
    """
    object provex_lower(object s)


cdef inline str text_of(object x):
    """compile._text: a value as the string tests see it."""
    if x is True:
        return "true"
    if x is False:
        return "false"
    if type(x) is str:
        return <str>x
    return str(x)


cpdef str value_text(object value):
    """fields.value_text: a field's value as one string (keys, de-duplication)."""
    if type(value) is str:
        return <str>value
    if isinstance(value, list):
        return ",".join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


@cython.final
cdef class View:
    """fields.EventView: one event as rules see it, each field computed once."""

    cdef object event
    cdef int code
    cdef PyObject* values[MAX_FIELDS]
    cdef PyObject* folded[MAX_FIELDS]  # str.lower() of each value's text, for string tests
    cdef PyObject* texts[MAX_FIELDS]  # value_text of each value, for correlation keys
    cdef int touched[MAX_FIELDS]
    cdef int ntouched
    cdef list extra  # getters of fields beyond the native ones, by id - N_NATIVE_FIELDS
    cdef object mount_hit  # fields.resolve_host_mount(event), once

    def __cinit__(self):
        self.extra = []
        self.mount_hit = UNSET

    def __dealloc__(self):
        self.clear()

    cdef void start(self, object event, int code):
        self.clear()
        self.event = event
        self.code = code

    cdef void clear(self):
        cdef int i, f
        for i in range(self.ntouched):
            f = self.touched[i]
            Py_XDECREF(self.values[f])
            Py_XDECREF(self.folded[f])
            Py_XDECREF(self.texts[f])
            self.values[f] = NULL
            self.folded[f] = NULL
            self.texts[f] = NULL
        self.ntouched = 0
        self.event = None
        self.mount_hit = UNSET

    cdef inline void _touch(self, int f):
        if self.values[f] == NULL and self.folded[f] == NULL and self.texts[f] == NULL:
            self.touched[self.ntouched] = f
            self.ntouched += 1

    cdef object get(self, int f):
        cdef PyObject* hit = self.values[f]
        if hit != NULL:
            return <object>hit
        value = self.compute(f) if f < N_NATIVE_FIELDS else self.extra[f - N_NATIVE_FIELDS](self.event)
        self._touch(f)
        Py_INCREF(value)
        self.values[f] = <PyObject*>value
        return value

    cdef object lower_text(self, int f):
        """str.lower() of the field's text (None when the value is None)."""
        cdef PyObject* hit = self.folded[f]
        if hit != NULL:
            return <object>hit
        value = self.get(f)
        folded = None if value is None else provex_lower(text_of(value))
        self._touch(f)
        Py_INCREF(folded)
        self.folded[f] = <PyObject*>folded
        return folded

    cdef str text(self, int f):
        """value_text of the field (a correlation's key or counted value)."""
        cdef PyObject* hit = self.texts[f]
        if hit != NULL:
            return <str>hit
        text = value_text(self.get(f))
        self._touch(f)
        Py_INCREF(text)
        self.texts[f] = <PyObject*>text
        return text

    cdef object host_mount(self):
        """fields.resolve_host_mount: (mount, host path) or None."""
        if self.mount_hit is not UNSET:
            return self.mount_hit
        hit = None
        container = ev(self.event, E_container)
        if container is not None:
            mounts = part(container, CI_host_mounts)
            if mounts:
                for path in self.subject_paths():
                    hit = host_mount_of(path, mounts)
                    if hit is not None:
                        break
        self.mount_hit = hit
        return hit

    cdef tuple subject_paths(self):
        """fields.subject_paths."""
        e = self.event
        cdef int code = self.code
        if code == T_EXEC:
            path = ev(e, E_path)
            image = ev(e, E_resolved_path) or (path if starts(path, "/") else "")
            interpreted = ev(e, E_interpreted_path)
            return tuple([p for p in (interpreted, image) if p])
        if code == T_OPEN:
            path = ev(e, E_resolved_path) or (ev(e, E_path) if starts(ev(e, E_path), "/") else "")
            return (path,) if path else ()
        if code == T_MOUNT:
            path = ev(e, E_resolved_path) or ev(e, E_source) or ev(e, E_path)
            return (_normpath(path),) if starts(path, "/") else ()
        return ()

    cdef object host_file(self):
        """fields.host_file: identity first."""
        ref = ev(self.event, E_file)
        if ref is not None and (self.code == T_OPEN or self.code == T_EXEC):
            host_path = part(ref, FR_host_path)
            if host_path:
                return host_path
        hit = self.host_mount()
        if hit is not None:
            return (<tuple>hit)[1]
        return ""

    cdef object image(self):
        """fields._image."""
        e = self.event
        process = ev(e, E_process)
        path = ev(e, E_path)
        if self.code == T_EXEC:
            resolved = ev(e, E_resolved_path)
            if resolved:
                return resolved
            if path == "/proc/self/exe" or path == f"/proc/{ev(e, E_pid)}/exe":
                if process is not None and starts(part(process, PR_exe), "/"):
                    return part(process, PR_exe)
            if path:
                return path
        if process is not None:
            exe = part(process, PR_exe)
            if exe:
                return exe
        return path if self.code == T_EXEC else ""

    cdef object pod(self):
        container = ev(self.event, E_container)
        return part(container, CI_pod) if container is not None else None

    cdef object compute(self, int f):
        e = self.event
        cdef int code = self.code
        cdef long long flags
        if f == F_Image:
            return self.image()
        if f == F_CommandLine:
            if code == T_EXEC:
                return " ".join(ev(e, E_argv))
            process = ev(e, E_process)
            return " ".join(part(process, PR_argv)) if process is not None else ""
        if f == F_ParentImage:
            process = ev(e, E_process)
            return part(process, PR_parent_exe) if process is not None else ""
        if f == F_ParentCommandLine:
            process = ev(e, E_process)
            return " ".join(part(process, PR_parent_argv)) if process is not None else ""
        if f == F_User:
            uid = ev(e, E_uid)
            return "root" if uid == 0 else str(uid)
        if f == F_ProcessId:
            return ev(e, E_pid)
        if f == F_ParentProcessId:
            return ev(e, E_ppid) or None
        if f == F_TargetFilename:
            if code != T_OPEN:
                return ""
            ref = ev(e, E_file)
            return ev(e, E_resolved_path) or ev(e, E_path) or (part(ref, FR_path) if ref is not None else "")
        if f == F_DestinationIp:
            if code == T_CONNECT:
                return ev(e, E_daddr)
            return _local_ip(e) if code == T_ACCEPT else ""
        if f == F_DestinationPort:
            return ev(e, E_dport) if code == T_CONNECT else ""
        if f == F_SourceIp:
            if code == T_ACCEPT:
                return ev(e, E_saddr)
            return _local_ip(e) if code == T_CONNECT else ""
        if f == F_SourcePort:
            return ev(e, E_sport) if code == T_ACCEPT else ""
        if f == F_Initiated:
            return "true" if code == T_CONNECT else "false" if code == T_ACCEPT else ""
        if f == F_TargetFilenameAsGiven:
            return ev(e, E_path) if code == T_OPEN else ""
        if f == F_ImageAsGiven:
            return ev(e, E_path) if code == T_EXEC else ""
        if f == F_PathResolution:
            return ev(e, E_resolution)
        if f == F_InterpretedFile:
            return ev(e, E_interpreted_path) if code == T_EXEC else ""
        if f == F_ExecutedFiles:
            return list(self.subject_paths()) if code == T_EXEC else []
        if f == F_ExecutedFileFromNetwork:
            return bool(ev(e, E_origin))
        if f == F_ProgramCarrier:
            return ev(e, E_carrier) if code == T_EXEC else ""
        if f == F_ImageKernelName:
            return ev(e, E_exe_name) if code == T_EXEC else ""
        if f == F_StdinType:
            if code != T_EXEC:
                return ""
            stdin = ev(e, E_stdin)
            return _file_type(part(stdin, FR_mode)) if stdin is not None else ""
        if f == F_FileIdentity:
            ref = ev(e, E_file)
            return f"{part(ref, FR_dev)}:{part(ref, FR_ino)}" if ref is not None else ""
        if f == F_FileVerdict:
            return ev(e, E_verdict) if code == T_OPEN else ""
        if f == F_IsSensitiveFile:
            if code != T_OPEN:
                return False
            ref = ev(e, E_file)
            return starts(ev(e, E_verdict), "sensitive") or (
                ref is not None and part(ref, FR_kind) in SENSITIVE_KINDS)
        if f == F_FileRealPath:
            ref = ev(e, E_file)
            return part(ref, FR_path) if ref is not None else ""
        if f == F_IsOwnSecret:
            ref = ev(e, E_file)
            if ref is not None and part(ref, FR_kind):
                return owned_by_reader(part(ref, FR_owner), ev(e, E_container))
            path = ev(e, E_resolved_path)
            return starts(path, "/var/run/secrets/") or starts(path, "/run/secrets/")
        if f == F_IsOtherContainerSecret:
            ref = ev(e, E_file)
            if ref is None:
                return False
            owner = part(ref, FR_owner)
            return bool(owner) and not owned_by_reader(owner, ev(e, E_container))
        if f == F_RepeatCount:
            repeats = ev(e, E_repeats)
            return repeats if code == T_OPEN and repeats else None
        if f == F_EventType:
            return ev(e, E_type).value
        if f == F_Syscall:
            return ev(e, E_syscall)
        if f == F_Comm:
            return ev(e, E_comm)
        if f == F_ThreadId:
            return ev(e, E_tid)
        if f == F_UserId:
            return ev(e, E_uid)
        if f == F_GroupId:
            return ev(e, E_gid)
        if f == F_ReturnCode:
            return ev(e, E_ret)
        if f == F_Success:
            return succeeded(e, code)
        if f == F_AncestorImages:
            process = ev(e, E_process)
            return part(process, PR_ancestors) if process is not None else []
        if f == F_OpenFlags:
            return ev(e, E_flags) if code == T_OPEN else ""
        if f == F_OpenWrite:
            flags = bits(ev(e, E_flags))
            return bool(flags & 3) and code == T_OPEN
        if f == F_OpenCreate:
            flags = bits(ev(e, E_flags))
            return bool(flags & O_CREAT) and code == T_OPEN
        if f == F_OpenTruncate:
            flags = bits(ev(e, E_flags))
            return bool(flags & O_TRUNC) and code == T_OPEN
        if f == F_DestinationEndpoint:
            if code != T_CONNECT:
                return ""
            daddr = ev(e, E_daddr)
            return endpoint(daddr, ev(e, E_dport)) if daddr else ""
        if f == F_DestinationIsApiServer:
            return ev(e, E_dest_is_apiserver)
        if f == F_AddressFamily:
            return ev(e, E_family)
        if f == F_PeerPodName or f == F_PeerPodNamespace or f == F_PeerPodUid:
            peer = ev(e, E_peer_pod)
            if peer is None:
                return ""
            return part(peer, PI_name if f == F_PeerPodName else PI_namespace if f == F_PeerPodNamespace else PI_uid)
        if f == F_NamespaceType:
            return ev(e, E_nstype)
        if f == F_NamespaceTypes:
            if code == T_SETNS or code == T_UNSHARE:
                return _namespace_names(ev(e, E_nstype), code == T_SETNS)
            return []
        if f == F_NamespaceFd:
            return ev(e, E_fd)
        if f == F_MountSource:
            return (ev(e, E_source) or ev(e, E_path)) if code == T_MOUNT else ""
        if f == F_MountTarget:
            return ev(e, E_target) if code == T_MOUNT else ""
        if f == F_MountFsType:
            return ev(e, E_fstype) if code == T_MOUNT else ""
        if f == F_MountFlags:
            return ev(e, E_flags) if code == T_MOUNT else ""
        if f == F_IsContainer:
            return ev(e, E_container) is not None
        if f == F_ContainerId or f == F_ContainerName or f == F_ContainerImage or f == F_ContainerRuntime:
            container = ev(e, E_container)
            if container is None:
                return ""
            return part(
                container,
                CI_id if f == F_ContainerId else CI_name if f == F_ContainerName
                else CI_image if f == F_ContainerImage else CI_runtime,
            )
        if f == F_IsContainerRuntime:
            by_runtime = ev(e, E_by_runtime)
            return by_runtime if by_runtime is not None else _is_container_runtime(e)
        if f == F_PodName or f == F_PodNamespace or f == F_PodUid or f == F_ServiceAccount or f == F_NodeName:
            pod = self.pod()
            if pod is None:
                return ""
            return part(
                pod,
                PI_name if f == F_PodName else PI_namespace if f == F_PodNamespace
                else PI_uid if f == F_PodUid else PI_service_account if f == F_ServiceAccount
                else PI_node,
            )
        if f == F_PodIp:
            pod = self.pod()
            if pod is None:
                return ""
            ips = part(pod, PI_ips)
            return ips[0] if ips else ""
        if F_AncestorProcessId1 <= f <= F_AncestorProcessId4:
            process = ev(e, E_process)
            lineage = part(process, PR_lineage) if process is not None else []
            if not lineage:
                return None
            return lineage[min(f - F_AncestorProcessId1 + 1, len(lineage) - 1)]
        if f == F_IsHostMount:
            return bool(self.host_file())
        if f == F_HostMountPath:
            return self.host_file()
        if f == F_HostMountContainerPath:
            hit = self.host_mount()
            return part((<tuple>hit)[0], HM_container_path) if hit is not None else ""
        if f == F_HostMountReadOnly:
            hit = self.host_mount()
            return part((<tuple>hit)[0], HM_read_only) if hit is not None else False
        if f == F_IsLate:
            return ev(e, E_late)
        if f == F_SummaryKind:
            summary = ev(e, E_summary)
            return part(summary, SI_kind) if summary is not None else ""
        if f == F_SummaryCount:
            summary = ev(e, E_summary)
            return part(summary, SI_count) if summary is not None else 0
        raise KeyError(f)


cdef inline bint succeeded(object event, int code) except -1:
    """fields.succeeded."""
    cdef long long ret = i64(ev(event, E_ret))
    return ret >= 0 or (code == T_CONNECT and ret == -EINPROGRESS)


# ================================================================ rules (compile.py)
#
# exporter/correlate/native/ir.py compiles each rule's parsed Sigma condition to nested
# tuples (see its docstring); `build_node` turns them into these nodes. Every test has the
# reference's semantics (compile.py's closures): strings case-insensitive unless cased, a
# list field matching when any element does, None matching nothing but null.

cdef class Test:
    """A test of one value (compile.Test)."""

    cdef bint value(self, object x) except -1:
        raise NotImplementedError

    cdef bint field(self, View view, int f) except -1:
        return self.value(view.get(f))


@cython.final
cdef class StrTest(Test):
    """compile._string_test's plain shapes: exact, prefix, suffix, contains."""

    cdef int kind  # 0 exact, 1 prefix, 2 suffix, 3 contains
    cdef str text
    cdef bint cased

    cdef inline bint match(self, str t):
        if self.kind == 0:
            return provex_equal(t, self.text)
        if self.kind == 1:
            return provex_match_at(t, self.text, 0)
        if self.kind == 2:
            return provex_match_at(t, self.text, len(t) - len(self.text))
        return self.text in t

    cdef bint value(self, object x) except -1:
        if x is None:
            return False
        t = text_of(x)
        return self.match(t if self.cased else provex_lower(t))

    cdef bint field(self, View view, int f) except -1:
        if self.cased:
            return self.value(view.get(f))
        t = view.lower_text(f)
        return t is not None and self.match(t)


@cython.final
cdef class SetTest(Test):
    """compile._any_value_test: one case-insensitive test of many values."""

    cdef frozenset exact
    cdef tuple prefixes
    cdef tuple suffixes
    cdef list others  # Test

    cdef inline bint match(self, str t, object x) except -1:
        if t in self.exact:
            return True
        for p in self.prefixes:
            if provex_match_at(t, p, 0):
                return True
        for p in self.suffixes:
            if provex_match_at(t, p, len(t) - len(<str>p)):
                return True
        for test in self.others:
            if (<Test>test).value(x):
                return True
        return False

    cdef bint value(self, object x) except -1:
        if x is None:
            return False
        return self.match(provex_lower(text_of(x)), x)

    cdef bint field(self, View view, int f) except -1:
        t = view.lower_text(f)
        return t is not None and self.match(t, view.get(f))


@cython.final
cdef class AnyTest(Test):
    """Any of several tests (a Sigma expansion)."""

    cdef list tests

    cdef bint value(self, object x) except -1:
        for test in self.tests:
            if (<Test>test).value(x):
                return True
        return False


@cython.final
cdef class BoolTest(Test):
    cdef object want  # True or False

    cdef bint value(self, object x) except -1:
        if x is self.want:
            return True
        if isinstance(x, bool):
            return False
        return as_bool(x) == self.want


@cython.final
cdef class NumTest(Test):
    cdef object number

    cdef bint value(self, object x) except -1:
        return as_number(x) == self.number


cdef inline bint is_empty(object x) except -1:
    """`x is None or x == "" or x == []` (compile.py's null), without building a list."""
    if x is None:
        return True
    if type(x) is str:
        return len(<str>x) == 0
    if type(x) is list:
        return len(<list>x) == 0
    return x == "" or x == []


@cython.final
cdef class NullTest(Test):
    cdef bint value(self, object x) except -1:
        return is_empty(x)


@cython.final
cdef class ExistsTest(Test):
    cdef bint want

    cdef bint value(self, object x) except -1:
        return (not is_empty(x)) == self.want


@cython.final
cdef class RegexTest(Test):
    """A regular expression (Python's re, as the reference): a Sigma `|re` value, searched,
    or a string with inner wildcards, matched whole. `literal`: a run every match contains
    (ir.required_literal), checked first."""

    cdef object match  # the compiled pattern's search or fullmatch
    cdef str literal

    cdef bint value(self, object x) except -1:
        if x is None:
            return False
        t = text_of(x)
        if self.literal and self.literal not in t:
            return False
        return self.match(t) is not None


@cython.final
cdef class CidrTest(Test):
    """compile._in_network: the address (parsed once per distinct text) in the network."""

    cdef int version
    cdef unsigned long long net_hi, net_lo, mask_hi, mask_lo

    cdef bint value(self, object x) except -1:
        if type(x) is not str or not x:
            return False
        parsed = address_of(<str>x)
        if parsed is None or (<Address>parsed).version != self.version:
            return False
        return ((<Address>parsed).hi & self.mask_hi) == self.net_hi and (
            (<Address>parsed).lo & self.mask_lo
        ) == self.net_lo


@cython.final
cdef class CompareTest(Test):
    cdef int op  # 0 <, 1 <=, 2 >, 3 >=, 4 !=
    cdef object number

    cdef bint value(self, object x) except -1:
        n = as_number(x)
        if n is None:
            return False
        if self.op == 0:
            return n < self.number
        if self.op == 1:
            return n <= self.number
        if self.op == 2:
            return n > self.number
        if self.op == 3:
            return n >= self.number
        return n != self.number


@cython.final
cdef class PyTest(Test):
    """A value test the IR has no node for: the reference's own closure."""

    cdef object func

    cdef bint value(self, object x) except -1:
        return bool(self.func(x))


cdef object as_bool(object x):
    """compile._as_bool."""
    if isinstance(x, bool):
        return x
    if isinstance(x, str):
        return {"true": True, "false": False}.get(x.lower())
    if isinstance(x, int):
        return x != 0
    return None


cdef object as_number(object x):
    """compile._as_number."""
    if isinstance(x, bool) or x is None:
        return None
    if isinstance(x, (int, float)):
        return x
    try:
        return int(x)
    except (TypeError, ValueError):
        return None


@cython.final
@cython.no_gc
cdef class Address:
    cdef int version
    cdef unsigned long long hi, lo


cdef dict ADDRESSES = {}
cdef object _ip_address = __import__("ipaddress").ip_address


cdef object address_of(str text):
    """compile._address, as 128 bits: a node talks to few addresses (bounded cache)."""
    hit = ADDRESSES.get(text, UNSET)
    if hit is not UNSET:
        return hit
    cdef Address out
    try:
        addr = _ip_address(text)
    except ValueError:
        out = None
    else:
        out = Address.__new__(Address)
        out.version = addr.version
        value = int(addr)
        out.hi = value >> 64
        out.lo = value & 0xFFFFFFFFFFFFFFFF
    if len(ADDRESSES) >= 4096:
        ADDRESSES.clear()
    ADDRESSES[text] = out
    return out


cdef class Node:
    """A condition over a View (compile.Predicate)."""

    cdef bint eval(self, View view) except -1:
        raise NotImplementedError


@cython.final
cdef class AllNode(Node):
    cdef list parts

    cdef bint eval(self, View view) except -1:
        for p in self.parts:
            if not (<Node>p).eval(view):
                return False
        return True


@cython.final
cdef class AnyNode(Node):
    cdef list parts

    cdef bint eval(self, View view) except -1:
        for p in self.parts:
            if (<Node>p).eval(view):
                return True
        return False


@cython.final
cdef class NotNode(Node):
    cdef Node inner

    cdef bint eval(self, View view) except -1:
        return not self.inner.eval(view)


@cython.final
cdef class FieldNode(Node):
    cdef int f
    cdef Test test

    cdef bint eval(self, View view) except -1:
        return self.test.field(view, self.f)


@cython.final
cdef class FlagNode(Node):
    """A field tested against true or false (the commonest leaf): a bool value is compared
    at once; anything else takes BoolTest's own reading."""

    cdef int f
    cdef object want
    cdef BoolTest test

    cdef bint eval(self, View view) except -1:
        x = view.get(self.f)
        if x is True or x is False:
            return x is self.want
        return self.test.value(x)


@cython.final
cdef class ElementNode(Node):
    """A list field: any element passes the test."""

    cdef int f
    cdef Test test

    cdef bint eval(self, View view) except -1:
        for x in view.get(self.f) or []:
            if self.test.value(x):
                return True
        return False


@cython.final
cdef class SameNode(Node):
    """Field = field (a Sigma field reference)."""

    cdef int a, b

    cdef bint eval(self, View view) except -1:
        x = view.get(self.a)
        y = view.get(self.b)
        if isinstance(x, str):
            x = x.lower()
        if isinstance(y, str):
            y = y.lower()
        return x == y


cdef Test build_test(tuple ir):
    kind = ir[0]
    cdef StrTest s
    cdef SetTest st
    cdef AnyTest a
    cdef BoolTest b
    cdef NumTest n
    cdef ExistsTest x
    cdef RegexTest r
    cdef CidrTest c
    cdef CompareTest cmp
    cdef PyTest py
    if kind == "str":
        s = StrTest.__new__(StrTest)
        s.kind = ("exact", "prefix", "suffix", "contains").index(ir[1])
        s.text = ir[2]
        s.cased = ir[3]
        return s
    if kind == "set":
        st = SetTest.__new__(SetTest)
        st.exact = frozenset(ir[1])
        st.prefixes = tuple(ir[2])
        st.suffixes = tuple(ir[3])
        st.others = [build_test(t) for t in ir[4]]
        return st
    if kind == "any":
        a = AnyTest.__new__(AnyTest)
        a.tests = [build_test(t) for t in ir[1]]
        return a
    if kind == "bool":
        b = BoolTest.__new__(BoolTest)
        b.want = bool(ir[1])
        return b
    if kind == "number":
        n = NumTest.__new__(NumTest)
        n.number = ir[1]
        return n
    if kind == "null":
        return NullTest.__new__(NullTest)
    if kind == "exists":
        x = ExistsTest.__new__(ExistsTest)
        x.want = ir[1]
        return x
    if kind == "search" or kind == "fullmatch":
        r = RegexTest.__new__(RegexTest)
        r.match = ir[1].search if kind == "search" else ir[1].fullmatch
        r.literal = ir[2] if kind == "search" else ""
        return r
    if kind == "cidr":
        c = CidrTest.__new__(CidrTest)
        network = ir[1]
        c.version = network.version
        mask = int(network.netmask)
        net = int(network.network_address)
        c.mask_hi, c.mask_lo = mask >> 64, mask & 0xFFFFFFFFFFFFFFFF
        c.net_hi, c.net_lo = net >> 64, net & 0xFFFFFFFFFFFFFFFF
        return c
    if kind == "compare":
        cmp = CompareTest.__new__(CompareTest)
        cmp.op = ("<", "<=", ">", ">=", "!=").index(ir[1])
        cmp.number = ir[2]
        return cmp
    if kind == "python":
        py = PyTest.__new__(PyTest)
        py.func = ir[1]
        return py
    raise ValueError(f"unknown test {kind!r}")


cdef Node build_node(tuple ir, dict field_ids):
    kind = ir[0]
    cdef AllNode all_
    cdef AnyNode any_
    cdef NotNode not_
    cdef FieldNode field
    cdef ElementNode element
    cdef SameNode same
    if kind == "and":
        all_ = AllNode.__new__(AllNode)
        all_.parts = [build_node(p, field_ids) for p in ir[1]]
        return all_
    if kind == "or":
        any_ = AnyNode.__new__(AnyNode)
        any_.parts = [build_node(p, field_ids) for p in ir[1]]
        return any_
    if kind == "not":
        not_ = NotNode.__new__(NotNode)
        not_.inner = build_node(ir[1], field_ids)
        return not_
    cdef FlagNode flag
    if kind == "field" and ir[2][0] == "bool":
        flag = FlagNode.__new__(FlagNode)
        flag.f = field_ids[ir[1]]
        flag.test = <BoolTest>build_test(ir[2])
        flag.want = flag.test.want
        return flag
    if kind == "field":
        field = FieldNode.__new__(FieldNode)
        field.f = field_ids[ir[1]]
        field.test = build_test(ir[2])
        return field
    if kind == "element":
        element = ElementNode.__new__(ElementNode)
        element.f = field_ids[ir[1]]
        element.test = build_test(ir[2])
        return element
    if kind == "same":
        same = SameNode.__new__(SameNode)
        same.a = field_ids[ir[1]]
        same.b = field_ids[ir[2]]
        return same
    raise ValueError(f"unknown condition node {kind!r}")


# ================================================================ sequences (sequence.py)

cdef enum:
    MAX_GROUPS = 8192  # sequence.MAX_GROUPS
    MAX_PER_STEP = 16  # sequence.MAX_PER_STEP

BOUNDS.update(MAX_GROUPS=MAX_GROUPS, MAX_PER_STEP=MAX_PER_STEP)

cdef enum:
    CT_EVENT_COUNT, CT_VALUE_COUNT, CT_TEMPORAL, CT_TEMPORAL_ORDERED
cdef enum:
    OP_GE, OP_GT, OP_EQ
cdef enum:
    LINEAGE_NONE, LINEAGE_DESCENDANT, LINEAGE_KIN

cdef tuple CORRELATION_TYPES = ("event_count", "value_count", "temporal", "temporal_ordered")


@cython.final
@cython.no_gc
cdef class Match:
    """sequence.Match: one event a correlation step matched."""

    cdef readonly object ts  # the event's time as recorded (what an alert tells)
    cdef long long t  # the same, as the window compares it (saturated: see i64)
    cdef readonly object event
    cdef readonly int step
    cdef readonly dict values


cdef inline Match new_match(long long t, object event, int step, dict values):
    cdef Match m = Match.__new__(Match)
    m.ts = ev(event, E_ts_ns)
    m.t = t
    m.event = event
    m.step = step
    m.values = values
    return m


cdef dict NO_VALUES = {}  # a match's join values when its step joins nothing (never written)


def _match_ts(Match m):
    return m.ts


def _match_order(Match m):
    return (m.ts, m.step)


cdef object path_norm(object value):
    """sequence._path_norm."""
    if isinstance(value, str) and value.startswith("/"):
        return _normpath(value)
    return value


cdef long long last_ts(object group):
    """sequence._last_ts."""
    cdef long long best = 0
    if isinstance(group, deque):
        return (<Match>group[-1]).t if group else 0
    if isinstance(group, dict):
        return (<Match>next(reversed((<dict>group).values()))).t if group else 0
    found = False
    for dq in <list>group:
        if dq and (not found or (<Match>dq[-1]).t > best):
            best = (<Match>dq[-1]).t
            found = True
    return best


@cython.final
cdef class Correlation:
    """sequence.CorrelationState: the groups of one correlation and how they complete."""

    cdef readonly object corr  # exporter.correlate.loader.Correlation
    cdef public dict groups  # key -> group, least recently used first
    cdef Graph graph
    cdef int type, op, lineage_mode, lineage_depth
    cdef Py_ssize_t count
    cdef long long timespan, swept
    cdef list names  # group-by names
    cdef dict key_fields  # step rule -> field ids of the group-by names (aliases resolved)
    cdef dict value_fields  # step rule -> field id of the value_count field
    cdef list steps  # the step rules (Rule), in order
    cdef dict join_fields  # step -> [(name, field id)] for x-provex-same
    cdef list same  # [{step: name}]
    cdef readonly long long matches
    cdef readonly long long evicted_window
    cdef readonly long long evicted_budget
    cdef object last_key  # the group used last: already at the end of `groups`

    # ---------------------------------------------------------- entry

    cdef list feed(self, Rule rule, object event, long long ts, View view):
        # A group's key: the reference's tuple of value texts, or, for one group-by field (the
        # common case), that text itself (a str keeps its hash; groups stay one per value).
        cdef list fids = self.key_fields[rule]
        if len(fids) == 1:
            key = view.text(<int>fids[0])
        else:
            key = tuple([view.text(<int>f) for f in fids])
        self._sweep(ts)
        cdef list found
        if self.type == CT_EVENT_COUNT:
            found = self._count(key, event, ts)
        elif self.type == CT_VALUE_COUNT:
            found = self._values(key, event, ts, view.text(<int>self.value_fields[rule]))
        else:
            found = self._sequence(key, rule, event, ts, view)
        if not found:
            return found
        values = (key,) if len(fids) == 1 else key
        return [(dict(zip(self.names, values)), m) for m in found]

    cdef object _group(self, object key, int kind):
        groups = self.groups
        group = groups.get(key)
        if group is None:
            if kind == CT_EVENT_COUNT:
                group = deque((), self.count + 1)
            elif kind == CT_VALUE_COUNT:
                group = {}
            else:
                group = [deque((), MAX_PER_STEP) for _ in range(len(self.steps))]
            groups[key] = group
            if len(groups) > MAX_GROUPS:
                pop_first(groups)
                self.evicted_budget += 1
        elif key != self.last_key:  # most recently used last (already last: nothing to move)
            del groups[key]
            groups[key] = group
        self.last_key = key
        return group

    cdef void _sweep(self, long long now) except *:
        if sat_sub(now, self.swept) < self.timespan:
            return
        self.swept = now
        cdef long long horizon = sat_sub(now, self.timespan)
        stale = [k for k, g in self.groups.items() if last_ts(g) < horizon]
        for k in stale:
            del self.groups[k]
        if stale:
            self.last_key = None
        self.evicted_window += len(stale)

    # ---------------------------------------------------------- counts

    cdef inline bint _holds(self, Py_ssize_t n):
        if self.op == OP_GE:
            return n >= self.count
        if self.op == OP_GT:
            return n > self.count
        return n == self.count

    cdef list _count(self, object key, object event, long long ts):
        dq = self._group(key, CT_EVENT_COUNT)
        cdef long long horizon = sat_sub(ts, self.timespan)
        while dq and (<Match>dq[0]).t < horizon:
            dq.popleft()
        dq.append(new_match(ts, event, 0, NO_VALUES))
        if self._holds(len(dq)):
            return [list(dq)[-self.count:] if self.op != OP_GT else list(dq)]
        return []

    cdef list _values(self, object key, object event, long long ts, str value):
        cdef dict seen = self._group(key, CT_VALUE_COUNT)
        cdef long long horizon = sat_sub(ts, self.timespan)
        while seen and (<Match>next(iter(seen.values()))).t < horizon:
            pop_first(seen)
        if value == "":
            return []
        fresh = value not in seen
        if not fresh:
            del seen[value]
        seen[value] = new_match(ts, event, 0, NO_VALUES)
        while len(seen) > self.count + 1:
            pop_first(seen)
        if fresh and self._holds(len(seen)):
            return [sorted(seen.values(), key=_match_ts)]
        return []

    # ---------------------------------------------------------- sequences

    cdef list _sequence(self, object key, Rule rule, object event, long long ts, View view):
        cdef list steps = self._group(key, CT_TEMPORAL)
        cdef Py_ssize_t n = len(self.steps)
        cdef long long horizon = sat_sub(ts, self.timespan)
        for dq in steps:
            while dq and (<Match>dq[0]).t < horizon:
                dq.popleft()
        cdef bint ordered = self.type == CT_TEMPORAL_ORDERED
        cdef list found = []
        cdef Py_ssize_t i
        for i in range(n - 1, -1, -1):
            if self.steps[i] is not rule:
                continue
            joins = self.join_fields.get(i)
            values = {name: path_norm(view.get(<int>fid)) for name, fid in joins} if joins else NO_VALUES
            match = new_match(ts, event, i, values)
            if not ordered or i == n - 1:
                chain = self._complete(steps, match, ordered)
                if chain is not None:
                    found.append(chain)
            if not ordered or i < n - 1:
                steps[i].append(match)
        return found[:1]

    cdef object _complete(self, list steps, Match last, bint ordered):
        cdef Py_ssize_t n = len(steps)
        cdef dict chosen = {last.step: last}
        cdef list order = [i for i in range(n - 1, -1, -1) if i != last.step]
        if self._search(steps, last, ordered, chosen, order, 0, last.t):
            return [chosen[i] for i in range(n)]
        return None

    cdef bint _search(self, list steps, Match last, bint ordered, dict chosen, list order,
                      Py_ssize_t pos, long long bound) except -1:
        cdef Py_ssize_t n = len(steps)
        cdef Match cand
        if pos == len(order):
            if ordered:
                chain = [chosen[i] for i in range(n)]
            else:
                chain = sorted(chosen.values(), key=_match_order)
            return self._valid(chain)
        i = order[pos]
        for c in reversed(steps[i]):
            cand = <Match>c
            if ordered and cand.t > bound:
                continue
            if cand.event is last.event:
                continue
            if not self._joins(cand, chosen):
                continue
            chosen[i] = cand
            if self._search(steps, last, ordered, chosen, order, pos + 1, cand.t):
                return True
            del chosen[i]
        return False

    cdef bint _joins(self, Match cand, dict chosen) except -1:
        for join in self.same:
            if cand.step not in join:
                continue
            mine = cand.values.get(join[cand.step])
            for step, name in (<dict>join).items():
                other = chosen.get(step)
                if other is not None and step != cand.step and (<Match>other).values.get(name) != mine:
                    return False
        return True

    cdef bint _valid(self, list chain) except -1:
        if self.lineage_mode == LINEAGE_NONE:
            return True
        cdef Py_ssize_t i
        for i in range(len(chain) - 1):
            if not self._related((<Match>chain[i]).event, (<Match>chain[i + 1]).event):
                return False
        return True

    cdef bint _related(self, object first, object then) except -1:
        process = ev(first, E_process)
        la = part(process, PR_lineage) if process is not None else []
        process = ev(then, E_process)
        lb = part(process, PR_lineage) if process is not None else []
        cdef int depth = self.lineage_depth
        if la and lb:
            if self.lineage_mode == LINEAGE_DESCENDANT:
                return ev(first, E_pid) in lb
            return not set(la[: depth + 1]).isdisjoint(lb[: depth + 1])
        a = ev(first, E_pid)
        b = ev(then, E_pid)
        if self.lineage_mode == LINEAGE_DESCENDANT:
            return self.graph.is_descendant(b, a)
        return self.graph.kin(a, b, depth)


# ================================================================ the core (engine.py's per-event path)


@cython.final
cdef class Rule:
    """A single-event rule, compiled to the IR."""

    cdef readonly object rule  # exporter.correlate.loader.Rule
    cdef Node predicate
    cdef bint include_failed, generate, reads_origin
    cdef list key_names
    cdef list key_fields
    cdef list correlations  # Correlation objects this rule is a step of, in order
    cdef readonly long long matches


# Logsource categories (fields.CATEGORY_DOC), by index: dispatch lists per category.
cdef enum:
    D_FILE_ACCESS, D_FILE_EVENT, D_NETWORK, D_PROCESS, D_MOUNT, D_SETNS, D_UNSHARE, D_SENSOR, N_CATEGORIES

cdef tuple CATEGORY_NAMES = (
    "file_access", "file_event", "network_connection", "process_creation", "mount", "setns",
    "unshare", "sensor",
)
if set(CATEGORY_NAMES) != set(_fields.CATEGORIES):
    raise ImportError("fields.CATEGORIES changed: the core dispatches on its own list")


cdef class Core:
    """The per-event path: the provenance graph, then the rules of the event's logsource
    categories, then the correlations their matches feed (engine.Correlator.process without
    de-duplication and alerts, which stay in Python). `add` returns the matches:
    [(rule or correlation, key, [Match, ...]), ...] in the reference's order, or None."""

    cdef readonly Graph graph
    cdef View view
    cdef list dispatch  # category index -> [Rule]
    cdef readonly list rules  # Rule, in the rule set's order
    cdef readonly list correlations  # Correlation, in the rule set's order
    cdef dict field_ids  # field name -> id
    cdef readonly long long skipped_failed

    def __init__(self, double window_s, Py_ssize_t max_nodes, Py_ssize_t max_edges):
        self.graph = Graph(window_s, max_nodes, max_edges)
        self.view = View()
        self.dispatch = [[] for _ in range(N_CATEGORIES)]
        self.rules = []
        self.correlations = []
        self.field_ids = {name: i for i, name in enumerate(NATIVE_FIELDS)}

    cdef int field_id(self, str name) except -1:
        """A field's id; a field the core has no getter for is computed by the reference's."""
        fid = self.field_ids.get(name)
        if fid is not None:
            return fid
        getter = _fields.FIELDS[name].get  # KeyError: the loader checked every name
        if N_NATIVE_FIELDS + len(self.view.extra) >= MAX_FIELDS:
            raise ValueError("too many rule fields for the native core")
        fid = self.field_ids[name] = N_NATIVE_FIELDS + len(self.view.extra)
        self.view.extra.append(getter)
        return fid

    def use_rules(self, list rules, list correlations, dict kept_groups):
        """Evaluate these rules from the next event on. `rules`: (loader.Rule, its IR);
        `correlations`: loader.Correlation; `kept_groups`: correlation uid -> the partial
        chains to keep from before a reload (the reference keeps them when the shape is equal)."""
        cdef Rule native
        cdef Correlation state
        self.dispatch = [[] for _ in range(N_CATEGORIES)]
        self.rules = []
        by_rule = {}
        for rule, ir in rules:
            native = Rule.__new__(Rule)
            native.rule = rule
            native.predicate = build_node(ir, self._ids(ir))
            native.include_failed = rule.include_failed
            native.generate = rule.generate
            native.reads_origin = rule.reads_origin
            native.key_names = list(rule.key_fields)
            native.key_fields = [self.field_id(name) for name in rule.key_fields]
            native.correlations = []
            self.rules.append(native)
            self.dispatch[CATEGORY_NAMES.index(rule.category)].append(native)
            by_rule[id(rule)] = native
        self.correlations = []
        for corr in correlations:
            state = Correlation.__new__(Correlation)
            state.corr = corr
            state.graph = self.graph
            state.groups = kept_groups.get(corr.uid, {})
            state.type = CORRELATION_TYPES.index(corr.type)
            state.op = (">=", ">", "==").index(corr.op)
            state.count = corr.count
            state.timespan = corr.timespan_ns
            state.lineage_mode = ("", "descendant", "kin").index(corr.lineage_mode)
            state.lineage_depth = corr.lineage_depth
            state.names = list(corr.group_by)
            state.steps = [by_rule[id(step)] for step in corr.steps]
            state.key_fields = {}
            state.value_fields = {}
            for step in corr.steps:
                native = by_rule[id(step)]
                state.key_fields[native] = [self.field_id(corr.field_for(n, step)) for n in corr.group_by]
                if corr.type == "value_count":
                    state.value_fields[native] = self.field_id(corr.field_for(corr.value_field, step))
            state.same = [dict(join) for join in corr.same]
            state.join_fields = {}
            for join in corr.same:
                for step_index, name in join.items():
                    state.join_fields.setdefault(step_index, []).append((name, self.field_id(name)))
            self.correlations.append(state)
            for step in dict.fromkeys(id(s) for s in corr.steps):  # each rule once, in order
                (<Rule>by_rule[step]).correlations.append(state)

    cdef dict _ids(self, tuple ir):
        """Field name -> id for every field an IR tree names."""
        cdef dict out = {}
        stack = [ir]
        while stack:
            node = stack.pop()
            kind = node[0]
            if kind == "and" or kind == "or":
                stack.extend(node[1])
            elif kind == "not":
                stack.append(node[1])
            elif kind == "same":
                out[node[1]] = self.field_id(node[1])
                out[node[2]] = self.field_id(node[2])
            else:
                out[node[1]] = self.field_id(node[1])
        return out

    cpdef object add(self, object event):
        """One event: annotate it (graph), judge it and whatever it made judge again."""
        if type(event) is not EVENT:
            raise TypeError(f"expected an exporter.model.Event, got {type(event).__name__}")
        cdef int code = type_code(ev(event, E_type))
        graph = self.graph
        graph._add(event, code)
        out = self._judge(event, code, False, None)
        if graph.rejudged:
            for late in graph.take_rejudged():
                out = self._judge(late, type_code(ev(late, E_type)), True, out)
        return out

    cdef object _judge(self, object event, int code, bint origin_only, object out):
        """engine.Correlator._judge."""
        cdef int first = -1
        cdef int second = -1
        cdef long long flags, family
        if code == T_OPEN:
            first = D_FILE_ACCESS
            flags = bits(ev(event, E_flags))
            if flags & (O_WRONLY | O_RDWR | O_CREAT):
                second = D_FILE_EVENT
        elif code == T_CONNECT or code == T_ACCEPT:
            family = i64(ev(event, E_family))
            if family == AF_INET or family == AF_INET6:
                first = D_NETWORK
        elif code == T_EXEC:
            first = D_PROCESS
        elif code == T_MOUNT:
            first = D_MOUNT
        elif code == T_SETNS:
            first = D_SETNS
        elif code == T_UNSHARE:
            first = D_UNSHARE
        elif code == T_SUMMARY:
            first = D_SENSOR
        if first < 0:
            return out
        cdef bint ok = succeeded(event, code)
        if not ok and not origin_only:
            self.skipped_failed += 1
        cdef View view = self.view
        cdef Rule rule
        view.start(event, code)
        try:
            for category in (first, second):
                if category < 0:
                    break
                for r in <list>self.dispatch[category]:
                    rule = <Rule>r
                    if origin_only and not rule.reads_origin:
                        continue
                    if (ok or rule.include_failed) and rule.predicate.eval(view):
                        if out is None:
                            out = []
                        self._matched(rule, event, view, out)
        finally:
            view.clear()
        return out

    cdef void _matched(self, Rule rule, object event, View view, list out) except *:
        """engine.Correlator._matched, up to the alerts."""
        cdef long long ts = i64(ev(event, E_ts_ns))
        cdef Correlation state
        rule.matches += 1
        if rule.generate:
            key = {name: view.text(<int>fid) for name, fid in zip(rule.key_names, rule.key_fields)}
            out.append((rule.rule, key, [new_match(ts, event, 0, NO_VALUES)]))
        for s in rule.correlations:
            state = <Correlation>s
            for key, matches in state.feed(rule, event, ts, view):
                state.matches += 1
                out.append((state.corr, key, matches))

    def field(self, str name, object event):
        """One field of one event, as the rules see it (for tests: fields.FIELDS[name].get)."""
        if type(event) is not EVENT:
            raise TypeError("expected an exporter.model.Event")
        cdef int fid = self.field_id(name)
        self.view.start(event, type_code(ev(event, E_type)))
        try:
            return self.view.get(fid)
        finally:
            self.view.clear()

    def predicates(self, object event):
        """Each rule's condition on this event, in rule order (whatever its category and
        outcome): for tests, against the reference's predicates."""
        if type(event) is not EVENT:
            raise TypeError("expected an exporter.model.Event")
        self.view.start(event, type_code(ev(event, E_type)))
        try:
            return [(<Rule>r).predicate.eval(self.view) for r in self.rules]
        finally:
            self.view.clear()

    def counters(self):
        """Cumulative counts for the metrics (engine.NativeCorrelator publishes their deltas)."""
        return {
            "skipped_failed": self.skipped_failed,
            "rule_matches": {(<Rule>r).rule.uid: (<Rule>r).matches for r in self.rules},
            "correlation_matches": {(<Correlation>c).corr.uid: (<Correlation>c).matches for c in self.correlations},
            "state_evictions": {
                "window": sum([(<Correlation>c).evicted_window for c in self.correlations]),
                "budget": sum([(<Correlation>c).evicted_budget for c in self.correlations]),
            },
        }

    def groups_of(self):
        """Correlation uid -> its partial chains (kept across a reload)."""
        return {(<Correlation>c).corr.uid: (<Correlation>c).groups for c in self.correlations}
