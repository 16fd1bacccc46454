# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The compiled drain of a BPF ring buffer and the decoder of its records.

`Ring.drain` walks the ring with the GIL released, in chunks of at most 256 records, and
decodes each chunk into Events (with the GIL) before it gives the chunk's space back to the
kernel. The protocol is the kernel's (kernel/bpf/ringbuf.c, and libbpf's consumer in
tools/lib/bpf/ringbuf.c, whose documented semantics this follows; no code is taken from
either): the producer position is read with an acquire load, so every record below it has
its header in place; each record's length word is read with an acquire load, so once its
BUSY bit is seen clear the record's bytes are visible (the kernel clears BUSY with an atomic
exchange after writing them); the consumer position is published with a release store, so
the kernel reuses that space only after the reads of it are done. A DISCARD record is
skipped, a BUSY one ends the drain (the producer is still writing it).

`Decoder` builds exactly the Event the Python reference (exporter.source.live.Decoder)
builds from the same bytes; its table (offsets, which fields each syscall copies) comes from
exporter/probes/layout.py through exporter/source/drain.py, so the layouts have one source.
"""

from cpython.long cimport PyLong_FromLong, PyLong_FromLongLong, PyLong_FromUnsignedLong, PyLong_FromUnsignedLongLong
from cpython.ref cimport Py_INCREF, Py_XDECREF, PyObject
from cpython.unicode cimport PyUnicode_DecodeASCII, PyUnicode_DecodeUTF8
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdio cimport snprintf
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

cdef extern from "Python.h":
    object PyObject_Vectorcall(object callable, PyObject **args, size_t nargsf, object kwnames)

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    #ifndef PROVEX_DRAIN_SOURCE
    #define PROVEX_DRAIN_SOURCE ""
    #endif
    static inline uint64_t provex_load_acquire_u64(const void *p) {
        return __atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE);
    }
    static inline uint32_t provex_load_acquire_u32(const void *p) {
        return __atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE);
    }
    static inline void provex_store_release_u64(void *p, uint64_t v) {
        __atomic_store_n((uint64_t *)p, v, __ATOMIC_RELEASE);
    }
    """
    const char *PROVEX_DRAIN_SOURCE
    uint64_t provex_load_acquire_u64(const void *p) nogil
    uint32_t provex_load_acquire_u32(const void *p) nogil
    void provex_store_release_u64(void *p, uint64_t v) nogil
    size_t strnlen(const char *s, size_t maxlen) nogil

SOURCE_DIGEST = PROVEX_DRAIN_SOURCE.decode()

cdef enum:
    # Ring-buffer record header (uapi/linux/bpf.h BPF_RINGBUF_*).
    RINGBUF_HDR = 8
    CHUNK = 256  # records decoded per GIL hold; LiveSource's deadline is checked per 256 events
    MAX_ARGS = 64  # keyword arguments of one Event
    MAX_COPIES = 12
    # What a record is (_kind).
    KIND_EVENT = 0
    KIND_CONTROL = 1
    KIND_SHORT = 2
    KIND_UNKNOWN = 3
    # Families with work beyond plain copies (drain.FAMILIES numbers them).
    FAMILY_PLAIN = 0
    FAMILY_OPEN = 1
    FAMILY_EXEC = 2
    FAMILY_CONNECT = 3
    FAMILY_ACCEPT = 4
    FAMILY_CGROUP = 5
    # Value kinds of a plain copy (drain.COPY_KINDS).
    COPY_I32 = 0
    COPY_U32 = 1
    COPY_U16 = 2
    COPY_U64 = 3
    COPY_I64 = 4
    COPY_TEXT = 5
    # The payload fields a family's extra work reads, in drain.EXTRA_SLOTS order.
    X_FILE = 0
    X_VERDICT = 1
    X_REPEATS = 2
    X_RESOLVE = 3
    X_ARGC = 4
    X_ARGV = 5
    X_EXE = 6
    X_STDIN = 7
    X_STDOUT = 8
    X_EXE_NAME = 9
    X_FAMILY = 10
    X_ADDR = 11
    X_PATH = 12
    X_ID = 13
    X_HIERARCHY = 14
    X_COUNT = 15

cdef uint32_t RINGBUF_BUSY = 0x80000000
cdef uint32_t RINGBUF_DISCARD = 0x40000000

HDR_RUNTIME = 4  # layout.HDR_RUNTIME; checked by drain.py


cdef packed struct EventHeader:  # bpf/provex.h struct event_hdr (layout.EventHeader)
    uint64_t ts
    uint64_t cgroup_id
    int64_t ret
    uint32_t pid
    uint32_t tid
    uint32_t uid
    uint32_t gid
    uint16_t sc
    uint16_t size
    uint32_t flags
    char comm[16]


cdef packed struct FileIdentity:  # struct file_id (layout.FileIdentity)
    uint64_t ino
    uint32_t dev
    uint32_t mode
    uint32_t gen
    uint32_t pad


def header_layout():
    """(size, offset of sc) of the header as compiled, and the file identity's size."""
    cdef EventHeader h
    return sizeof(EventHeader), <size_t>(<char*>&h.sc - <char*>&h), sizeof(FileIdentity)


cdef struct Copy:
    uint32_t offset
    uint32_t length  # text: the field's bytes
    int kind


cdef struct Row:
    int family
    int control  # a control record (cgroup_mkdir/rmdir), not an Event
    int removed  # cgroup_rmdir
    uint32_t min_size
    int ncopies
    Copy copies[MAX_COPIES]
    int nargs
    int order[MAX_ARGS]  # the Event's arguments are passed in its field order (msgspec matches them faster)
    # Where the fields a family's extra work reads lie, and their sizes, by X_* (drain.EXTRA_SLOTS).
    uint32_t at[X_COUNT]
    uint32_t size[X_COUNT]


cdef inline uint32_t _u32(const uint8_t *p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v


cdef inline object _text(const uint8_t *p, size_t length):
    """A NUL-terminated field as text, as layout.c_string reads it."""
    return PyUnicode_DecodeUTF8(<const char*>p, strnlen(<const char*>p, length), "surrogateescape")


cdef object _ipv4(const uint8_t *a):
    cdef char buf[16]
    snprintf(buf, 16, "%u.%u.%u.%u", a[0], a[1], a[2], a[3])
    return (<bytes>buf).decode("ascii")


cdef object _ipv6(const uint8_t *a):
    """As str(ipaddress.IPv6Address): lower-case hextets, the longest run of two or more
    zero hextets (the first of equal runs) written as "::"."""
    cdef int hextets[8]
    cdef int i, best_start = -1, best_len = 0, cur_start = -1, cur_len = 0
    for i in range(8):
        hextets[i] = (a[2 * i] << 8) | a[2 * i + 1]
        if hextets[i] == 0:
            cur_len += 1
            if cur_start == -1:
                cur_start = i
            if cur_len > best_len:
                best_len, best_start = cur_len, cur_start
        else:
            cur_len, cur_start = 0, -1
    cdef char buf[48]
    cdef int n = 0
    if best_len < 2:
        best_start = -1
    i = 0
    while i < 8:
        if i == best_start:
            buf[n] = b":"
            buf[n + 1] = b":"
            n += 2
            i += best_len
            continue
        if n > 0 and buf[n - 1] != b":":
            buf[n] = b":"
            n += 1
        n += snprintf(buf + n, 48 - n, "%x", hextets[i])
        i += 1
    return PyUnicode_DecodeUTF8(buf, n, NULL)


cdef inline bint _v4_mapped(const uint8_t *a) noexcept nogil:
    cdef int i
    for i in range(10):
        if a[i]:
            return False
    return a[10] == 0xFF and a[11] == 0xFF


cdef class Decoder:
    """Raw records to Events (or a cgroup control record), the Python Decoder's twin.

    `rows`: per syscall id, (name, EventType, family number, min size, copies, extras as
    (offset, size) in X_* order, kwnames, order), built by exporter/source/drain.py from the layout table: the values are
    made in the order header, copies, extras; `order` says which of them is passed at each
    position of `kwnames`."""

    cdef Row *rows
    cdef int nrows
    cdef list names, types, kwnames
    cdef object event_cls, file_cls, verdicts, gen_kw
    cdef int64_t offset_ns
    cdef object offset_py
    cdef bint identity
    cdef uint32_t arg_len, argv_max  # exec's argv: bytes an entry, entries
    cdef readonly uint64_t short_records, unknown_syscall

    def __cinit__(self):
        self.rows = NULL

    def __init__(self, rows, event_cls, file_cls, verdicts, int64_t offset_ns, bint identity, argv_shape):
        self.nrows = len(rows)
        self.rows = <Row*>calloc(max(self.nrows, 1), sizeof(Row))
        if self.rows == NULL:
            raise MemoryError()
        self.names, self.types, self.kwnames = [], [], []
        self.event_cls, self.file_cls = event_cls, file_cls
        self.verdicts = tuple(verdicts)
        self.gen_kw = ("gen",)
        self.offset_ns, self.offset_py, self.identity = offset_ns, offset_ns, identity
        self.arg_len, self.argv_max = argv_shape
        cdef Row *row
        for index, (name, event_type, family, min_size, copies, extras, kwnames, order) in enumerate(rows):
            if len(copies) > MAX_COPIES or len(kwnames) > MAX_ARGS:
                raise ValueError(f"{name}: too many fields for the compiled decoder")
            if sorted(order) != list(range(len(kwnames))):
                raise ValueError(f"{name}: the order of its arguments is not a permutation")
            row = &self.rows[index]
            row.family, row.min_size = family, min_size
            row.control = event_type is None
            row.removed = name == "cgroup_rmdir"
            row.ncopies, row.nargs = len(copies), len(order)
            for i, position in enumerate(order):
                row.order[i] = position
            for i, (offset, length, kind) in enumerate(copies):
                row.copies[i].offset, row.copies[i].length, row.copies[i].kind = offset, length, kind
            if len(extras) != X_COUNT:
                raise ValueError(f"{name}: {len(extras)} extra fields, the decoder reads {X_COUNT}")
            for i, (offset, size) in enumerate(extras):
                row.at[i], row.size[i] = offset, size
            self.names.append(name)
            self.types.append(event_type)
            self.kwnames.append(tuple(kwnames))

    def __dealloc__(self):
        free(self.rows)

    def decode(self, size_t address, uint32_t size):
        """The record at `address` (the bytes after its ring header) as the Python Decoder
        returns it: an Event, (cgroup id, hierarchy, path, removed), or None (counted)."""
        cdef int kind
        return self.decode_at(<const uint8_t*>address, size, &kind)

    cdef object decode_at(self, const uint8_t *p, uint32_t size, int *kind):
        kind[0] = _kind(self.rows, self.nrows, p, size)
        if kind[0] == KIND_SHORT:
            self.short_records += 1
            return None
        if kind[0] == KIND_UNKNOWN:
            self.unknown_syscall += 1
            return None
        cdef const EventHeader *h = <const EventHeader*>p
        cdef Row *row = &self.rows[h.sc]
        if kind[0] == KIND_CONTROL:
            return (
                PyLong_FromUnsignedLongLong((<const uint64_t*>(p + row.at[X_ID]))[0]),
                PyLong_FromUnsignedLong(_u32(p + row.at[X_HIERARCHY])),
                _text(p + row.at[X_PATH], row.size[X_PATH]),
                bool(row.removed),
            )
        return self.event(p, h, row)

    cdef object event(self, const uint8_t *p, const EventHeader *h, Row *row):
        cdef PyObject *args[MAX_ARGS]
        cdef PyObject *ordered[MAX_ARGS]
        cdef int n = 0, i, length
        cdef char ident[80]
        cdef uint64_t ts = h.ts
        cdef object ts_ns, event_id
        # ts + offset as Python adds them; the fast path when the sum fits in 64 bits.
        if (self.offset_ns >= 0 and ts <= 0xFFFFFFFFFFFFFFFFULL - <uint64_t>self.offset_ns) or (
            self.offset_ns < 0 and ts >= <uint64_t>(-self.offset_ns)
        ):
            ts = ts + <uint64_t>self.offset_ns
            ts_ns = PyLong_FromUnsignedLongLong(ts)
            length = _hex(ident, ts)  # f"{ts_ns:x}-{tid:x}-{sc}"
            ident[length] = b"-"
            length += 1 + _hex(ident + length + 1, h.tid)
            ident[length] = b"-"
            length += 1 + _decimal(ident + length + 1, h.sc)
            event_id = PyUnicode_DecodeASCII(ident, length, NULL)
        else:
            ts_ns = PyLong_FromUnsignedLongLong(ts) + self.offset_py
            event_id = f"{ts_ns:x}-{h.tid:x}-{h.sc}"
        try:
            n = _push(args, n, event_id)
            n = _push(args, n, self.types[h.sc])
            n = _push(args, n, self.names[h.sc])
            n = _push(args, n, ts_ns)
            n = _push(args, n, PyLong_FromUnsignedLong(h.pid))
            n = _push(args, n, PyLong_FromUnsignedLong(h.tid))
            n = _push(args, n, PyLong_FromUnsignedLong(h.uid))
            n = _push(args, n, PyLong_FromUnsignedLong(h.gid))
            n = _push(args, n, _text(<const uint8_t*>h.comm, 16))
            n = _push(args, n, PyLong_FromUnsignedLongLong(h.cgroup_id))
            n = _push(args, n, PyLong_FromLongLong(h.ret))
            n = _push(args, n, bool(h.flags & HDR_RUNTIME) if self.identity else None)
            for i in range(row.ncopies):
                n = _push(args, n, _copy(p, &row.copies[i]))
            n = self.extras(p, row, args, n)
            if n != row.nargs:
                raise ValueError(f"{self.names[h.sc]}: {n} arguments made, {row.nargs} named")
            for i in range(n):
                ordered[i] = args[row.order[i]]
            return PyObject_Vectorcall(self.event_cls, ordered, 0, self.kwnames[h.sc])
        finally:
            for i in range(n):
                Py_XDECREF(args[i])

    cdef int extras(self, const uint8_t *p, Row *row, PyObject **args, int n) except -1:
        """The family's work beyond copies, in drain.EXTRA_FIELDS order (layout.FAMILY_EXTRAS)."""
        cdef uint32_t verdict, argc, i
        cdef uint16_t family
        cdef const uint8_t *addr
        if row.family == FAMILY_OPEN:
            n = _push(args, n, self.file_ref(p + row.at[X_FILE]))
            verdict = _u32(p + row.at[X_VERDICT])
            n = _push(args, n, self.verdicts[verdict] if 0 < verdict < len(self.verdicts) else "")
            n = _push(args, n, PyLong_FromUnsignedLong(_u32(p + row.at[X_REPEATS])))
            n = _push(args, n, PyLong_FromUnsignedLongLong((<const uint64_t*>(p + row.at[X_RESOLVE]))[0]))
        elif row.family == FAMILY_EXEC:
            argc = _u32(p + row.at[X_ARGC])
            if argc > self.argv_max:
                argc = self.argv_max
            argv = [_text(p + row.at[X_ARGV] + i * self.arg_len, self.arg_len) for i in range(argc)]
            n = _push(args, n, argv)
            n = _push(args, n, self.file_ref(p + row.at[X_EXE]))
            n = _push(args, n, self.file_ref(p + row.at[X_STDIN]))
            n = _push(args, n, self.file_ref(p + row.at[X_STDOUT]))
            n = _push(args, n, _text(p + row.at[X_EXE_NAME], row.size[X_EXE_NAME]))
        elif row.family == FAMILY_CONNECT:
            family = (<const uint16_t*>(p + row.at[X_FAMILY]))[0]
            addr = p + row.at[X_ADDR]
            n = _push(args, n, self.file_ref(p + row.at[X_FILE]))
            n = _push(args, n, _text(p + row.at[X_PATH], row.size[X_PATH]) if family == 1 else "")
            n = _push(args, n, "" if family == 1 else _ip(family, addr))
        elif row.family == FAMILY_ACCEPT:
            family = (<const uint16_t*>(p + row.at[X_FAMILY]))[0]
            addr = p + row.at[X_ADDR]
            n = _push(args, n, self.file_ref(p + row.at[X_FILE]))
            if family == 10 and _v4_mapped(addr):  # an IPv4 client of a dual-stack listener
                n = _push(args, n, _ipv4(addr + 12))
            else:
                n = _push(args, n, _ip(family, addr))
        return n

    cdef object file_ref(self, const uint8_t *p):
        cdef FileIdentity f
        memcpy(&f, p, sizeof(FileIdentity))
        if not f.ino and not f.dev:
            return None
        cdef PyObject *args[4]
        cdef int n = 0, i
        try:
            n = _push(args, n, PyLong_FromUnsignedLong(f.dev))
            n = _push(args, n, PyLong_FromUnsignedLongLong(f.ino))
            n = _push(args, n, PyLong_FromUnsignedLong(f.mode))
            n = _push(args, n, PyLong_FromUnsignedLong(f.gen))
            return PyObject_Vectorcall(self.file_cls, args, 3, self.gen_kw)
        finally:
            for i in range(n):
                Py_XDECREF(args[i])


cdef inline int _kind(const Row *rows, int nrows, const uint8_t *p, uint32_t size) noexcept nogil:
    """What a record is: the checks Decoder.decode makes before it reads a field."""
    if size < sizeof(EventHeader):
        return KIND_SHORT
    cdef uint16_t sc = (<const EventHeader*>p).sc
    if sc >= nrows:
        return KIND_UNKNOWN
    if size < rows[sc].min_size:
        return KIND_SHORT
    return KIND_CONTROL if rows[sc].control else KIND_EVENT


cdef inline int _hex(char *out, uint64_t value) noexcept nogil:
    """`value` in lower-case hex, as f"{value:x}"; how many characters."""
    cdef int n = 0, i
    cdef char digits[16]
    while True:
        digits[n] = b"0123456789abcdef"[value & 15]
        n += 1
        value >>= 4
        if value == 0:
            break
    for i in range(n):
        out[i] = digits[n - 1 - i]
    return n


cdef inline int _decimal(char *out, uint64_t value) noexcept nogil:
    cdef int n = 0, i
    cdef char digits[20]
    while True:
        digits[n] = b"0123456789"[value % 10]
        n += 1
        value //= 10
        if value == 0:
            break
    for i in range(n):
        out[i] = digits[n - 1 - i]
    return n


cdef inline int _push(PyObject **args, int n, object value) except -1:
    Py_INCREF(value)
    args[n] = <PyObject*>value
    return n + 1


cdef object _ip(uint16_t family, const uint8_t *addr):
    if family == 2:
        return _ipv4(addr)
    if family == 10:
        return _ipv6(addr)
    return ""


cdef object _copy(const uint8_t *p, Copy *c):
    cdef const uint8_t *at = p + c.offset
    cdef int32_t i32
    cdef uint16_t u16
    cdef uint64_t u64
    cdef int64_t i64
    if c.kind == COPY_I32:
        memcpy(&i32, at, 4)
        return PyLong_FromLong(i32)
    if c.kind == COPY_U32:
        return PyLong_FromUnsignedLong(_u32(at))
    if c.kind == COPY_U16:
        memcpy(&u16, at, 2)
        return PyLong_FromUnsignedLong(u16)
    if c.kind == COPY_U64:
        memcpy(&u64, at, 8)
        return PyLong_FromUnsignedLongLong(u64)
    if c.kind == COPY_I64:
        memcpy(&i64, at, 8)
        return PyLong_FromLongLong(i64)
    return _text(at, c.length)


cdef struct Entry:
    uint64_t next  # the consumer position after this record
    uint64_t header  # where its ring header lies (before masking)
    uint32_t size


cdef class Ring:
    """One ring buffer's consumer, over the pages a bpfsys.RingBuffer mapped (it keeps
    them mapped: `owner` is held for as long as this lives)."""

    cdef uint8_t *consumer
    cdef uint8_t *producer
    cdef const uint8_t *data
    cdef uint64_t mask
    cdef Decoder decoder
    cdef const Row *rows  # the decoder's table (it lives as long as this)
    cdef int nrows
    cdef object owner

    def __init__(self, owner, size_t consumer, size_t producer, size_t data, uint64_t size, Decoder decoder):
        if size == 0 or size & (size - 1):
            raise ValueError(f"a ring buffer's data area is a power of two, not {size}")
        self.owner, self.decoder = owner, decoder
        self.rows, self.nrows = decoder.rows, decoder.nrows
        self.consumer, self.producer = <uint8_t*>consumer, <uint8_t*>producer
        self.data, self.mask = <const uint8_t*>data, size - 1

    cdef int scan(self, uint64_t cons, Entry *out, int max_events, uint64_t *end, bint *ready) noexcept nogil:
        """Up to CHUNK records from `cons`, at most `max_events` of them events: how many
        were taken. `end`: the position after the last record taken or skipped (DISCARD);
        `ready`: more records are there to take (False: the ring is empty up to a record
        the producer is still writing, BUSY, or to its end)."""
        cdef int n = 0, events = 0
        cdef uint64_t prod, nxt
        cdef uint32_t length, size
        cdef const uint8_t *header
        ready[0] = False
        while True:
            prod = provex_load_acquire_u64(self.producer)
            if cons >= prod:
                end[0] = cons
                return n
            while cons < prod:
                if n == CHUNK or events == max_events:
                    end[0], ready[0] = cons, True
                    return n
                header = self.data + (cons & self.mask)
                length = provex_load_acquire_u32(header)
                if length & RINGBUF_BUSY:
                    end[0] = cons
                    return n
                size = length & ~(<uint32_t>(RINGBUF_BUSY | RINGBUF_DISCARD))
                nxt = cons + ((size + RINGBUF_HDR + 7) & ~(<uint64_t>7))
                if not length & RINGBUF_DISCARD:
                    out[n].next, out[n].header, out[n].size = nxt, cons, size
                    n += 1
                    if _kind(self.rows, self.nrows, header + RINGBUF_HDR, size) == KIND_EVENT:
                        events += 1
                cons = nxt

    def pending(self):
        """Records are waiting (or being written)."""
        return provex_load_acquire_u64(self.producer) > (<uint64_t*>self.consumer)[0]

    def drain(self, Py_ssize_t limit, int64_t deadline_ns, on_control):
        """Events of the records waiting, in order, and whether the drain stopped at a bound:
        `limit` events, or `deadline_ns` (CLOCK_MONOTONIC, checked at every 256th event). The
        event that reaches a bound is kept; what follows it stays in the ring. Control records
        go to `on_control(record)` as they come."""
        cdef Entry entries[CHUNK]
        cdef uint64_t cons = (<uint64_t*>self.consumer)[0], end, done
        cdef int n, i, kind = KIND_SHORT, room
        cdef bint more
        cdef timespec now
        cdef list events = []
        cdef object record
        if limit <= 0:
            return events, True
        while True:
            room = <int>min(limit - len(events), CHUNK - len(events) % CHUNK)
            with nogil:
                n = self.scan(cons, entries, room, &end, &more)
            done = cons
            try:
                for i in range(n):
                    record = self.decoder.decode_at(
                        self.data + (entries[i].header & self.mask) + RINGBUF_HDR, entries[i].size, &kind
                    )
                    if kind == KIND_EVENT:
                        events.append(record)
                    elif kind == KIND_CONTROL:
                        on_control(record)
                    done = entries[i].next
                done = end
            finally:
                provex_store_release_u64(self.consumer, done)
            cons = end
            if len(events) >= limit:
                return events, True
            if events and len(events) % CHUNK == 0:
                clock_gettime(CLOCK_MONOTONIC, &now)
                if now.tv_sec * 1_000_000_000 + now.tv_nsec >= deadline_ns:
                    return events, True
            if not more:
                return events, False
