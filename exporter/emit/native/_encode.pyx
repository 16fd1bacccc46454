# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The emit stage's native encoder: a document's bytes from a compiled program, in C.

A program is what exporter.emit.native lays out once per document shape: the constant bytes
around each value (keys, braces, commas, protobuf tags: `consts`, one more than the ops)
and, per op, how to write a value (`ops`) and which of the document's values it is
(`indices`). Running it appends each constant and each value to one buffer: no nested dict
is built, no Python call is made per field. Protobuf's length-delimited fields are an open
and a close around their content: at the close the content moves up by the size of its
length, which goes before it.

The value encodings are msgspec's JSON (strings escaped as msgspec escapes them: `"`, `\\`
and control characters, the rest as UTF-8), decimal integers and UTF-8; a value of any other
type is handed to the program's `delegate` (msgspec's encoder, or an OTLP AnyValue
encoder), so its bytes are the reference's by construction. A string that is not valid
UTF-8 (a surrogate) raises UnicodeEncodeError, as msgspec and str.encode do: the caller then
takes the reference path, which escapes it.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.dict cimport PyDict_Next
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from libc.string cimport memcpy, memmove

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL
    bint PyUnicode_CheckExact(object value)
    bint PyLong_CheckExact(object value)
    bint PyBool_Check(object value)
    bint PyBytes_CheckExact(object value)
    void* PyTuple_GET_ITEM(object tuple, Py_ssize_t index)

cdef extern from *:
    """
    #ifndef PROVEX_ENCODE_SOURCE
    #define PROVEX_ENCODE_SOURCE "unknown"
    #endif
    """
    const char* PROVEX_ENCODE_SOURCE

SOURCE_DIGEST = PROVEX_ENCODE_SOURCE.decode()

# How a value is written (exporter.emit.native lays programs out with these).
OP_JSON = 0  # a JSON value, as msgspec writes it (str, int, bool and None here; else delegate)
OP_STRING = 1  # a str, as a JSON string
OP_INT = 2  # an int, as decimal digits
OP_DELEGATE = 3  # the delegate's bytes
OP_UTF8 = 4  # a str's UTF-8 bytes
# Protobuf's length-delimited fields, whose length is known only at their end (no value):
OP_OPEN = 5  # a field's content starts here...
OP_CLOSE = 6  # ...and ends here: its length goes before it
OP_ANY_INT = 7  # an int as an OTLP AnyValue's int_value (past int64: the delegate's, which refuses it)
OP_ANY_BOOL = 8  # a bool as an OTLP AnyValue's bool_value
cdef enum:
    DEPTH_LIMIT = 32
MAX_DEPTH = DEPTH_LIMIT


cdef struct Buffer:
    char* data
    Py_ssize_t size
    Py_ssize_t capacity


cdef int reserve(Buffer* buf, Py_ssize_t extra) except -1:
    cdef Py_ssize_t wanted = buf.size + extra
    cdef Py_ssize_t capacity = buf.capacity
    cdef char* data
    if wanted <= capacity:
        return 0
    while capacity < wanted:
        capacity *= 2
    data = <char*>PyMem_Realloc(buf.data, capacity)
    if data == NULL:
        raise MemoryError()
    buf.data = data
    buf.capacity = capacity
    return 0


cdef inline int put(Buffer* buf, const char* data, Py_ssize_t size) except -1:
    if buf.size + size > buf.capacity:
        reserve(buf, size)
    memcpy(buf.data + buf.size, data, size)
    buf.size += size
    return 0


cdef inline int put_bytes(Buffer* buf, object data) except -1:
    if not PyBytes_CheckExact(data):
        raise TypeError(f"an encoder returned {type(data).__name__}, expected bytes")
    return put(buf, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))


cdef const char* HEX = b"0123456789abcdef"
# The escapes msgspec writes with a letter (the other control characters as \u00XX).
cdef char SHORT_ESCAPE[128]
for _byte, _letter in zip(b'"\\\n\r\t\b\f', b'"\\nrtbf'):
    SHORT_ESCAPE[_byte] = _letter
del _byte, _letter


cdef int put_json_string(Buffer* buf, object text) except -1:
    """`text` as msgspec writes a str: quoted, `"` `\\` and bytes below 0x20 escaped."""
    cdef Py_ssize_t size = 0
    cdef const char* data = PyUnicode_AsUTF8AndSize(text, &size)  # UnicodeEncodeError on a surrogate
    cdef Py_ssize_t i, start = 0
    cdef unsigned char c
    cdef char escape[6]
    reserve(buf, size + 2)
    buf.data[buf.size] = b'"'
    buf.size += 1
    for i in range(size):
        c = <unsigned char>data[i]
        if c >= 0x20 and c != 0x22 and c != 0x5C:
            continue
        put(buf, data + start, i - start)
        start = i + 1
        escape[0] = b"\\"
        if SHORT_ESCAPE[c]:
            escape[1] = SHORT_ESCAPE[c]
            put(buf, escape, 2)
            continue
        escape[1] = b"u"
        escape[2] = b"0"
        escape[3] = b"0"
        escape[4] = HEX[c >> 4]
        escape[5] = HEX[c & 15]
        put(buf, escape, 6)
    put(buf, data + start, size - start)
    put(buf, b'"', 1)
    return 0


cdef int put_int(Buffer* buf, object value) except -1:
    """An int's decimal digits (beyond 64 bits as `b"%d" % value` writes them: so does
    msgspec, and so does the OTLP-JSON reference)."""
    cdef int overflow = 0
    cdef long long number = PyLong_AsLongLongAndOverflow(value, &overflow)
    cdef unsigned long long magnitude
    cdef char digits[24]
    cdef int start = 24
    if overflow:
        return put_bytes(buf, b"%d" % value)
    # by hand: snprintf costs ~150 ns a number here
    magnitude = <unsigned long long>number if number >= 0 else 0ULL - <unsigned long long>number
    while True:
        start -= 1
        digits[start] = <char>(48 + magnitude % 10)
        magnitude //= 10
        if magnitude == 0:
            break
    if number < 0:
        start -= 1
        digits[start] = b"-"
    return put(buf, digits + start, 24 - start)


cdef int put_varint(Buffer* buf, unsigned long long value) except -1:
    cdef char digits[10]
    cdef int size = 0
    while value >= 0x80:
        digits[size] = <char>((value & 0x7F) | 0x80)
        value >>= 7
        size += 1
    digits[size] = <char>value
    return put(buf, digits, size + 1)


cdef inline int varint_size(unsigned long long value) noexcept:
    cdef int size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


cdef int close_length(Buffer* buf, Py_ssize_t start) except -1:
    """What was written since `start` becomes a length-delimited field: its length (a varint)
    goes before it, the bytes move up to make room (a document is a few KB, nesting 4 deep)."""
    cdef Py_ssize_t length = buf.size - start
    cdef int room = varint_size(<unsigned long long>length)
    cdef Py_ssize_t end = buf.size
    reserve(buf, room)
    memmove(buf.data + start + room, buf.data + start, length)
    buf.size = start
    put_varint(buf, <unsigned long long>length)
    buf.size = end + room
    return 0


cdef int put_any_int(Buffer* buf, object value, object delegate) except -1:
    """AnyValue int_value (field 3): the int64 as a varint, a negative one as its 64-bit
    two's complement; one past int64 through `delegate`."""
    cdef int overflow = 0
    cdef long long number = PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow:
        return put_bytes(buf, delegate(value))
    put(buf, b"\x18", 1)
    return put_varint(buf, <unsigned long long>number)


cdef int put_utf8(Buffer* buf, object text) except -1:
    cdef Py_ssize_t size = 0
    cdef const char* data = PyUnicode_AsUTF8AndSize(text, &size)  # UnicodeEncodeError on a surrogate
    return put(buf, data, size)


cdef int put_json(Buffer* buf, object value, object delegate) except -1:
    """A JSON value: the common scalars here, the rest as `delegate` (msgspec) writes it."""
    if PyUnicode_CheckExact(value):
        return put_json_string(buf, value)
    if PyBool_Check(value):
        return put(buf, b"true", 4) if value else put(buf, b"false", 5)
    if PyLong_CheckExact(value):
        return put_int(buf, value)
    if value is None:
        return put(buf, b"null", 4)
    return put_bytes(buf, delegate(value))


cdef class Program:
    """The bytes of one document shape, from its values (see the module's docstring).
    Called with the document's values in order, as a shape function of
    exporter.emit.shapes is."""

    cdef tuple consts  # kept alive: `const_data` points into them
    cdef object delegate
    cdef Py_ssize_t count  # values
    cdef Py_ssize_t needed  # the length `values` must have at least
    cdef const char** const_data
    cdef Py_ssize_t* const_size
    cdef int* ops
    cdef Py_ssize_t* indices
    cdef Py_ssize_t hint  # the last result's size: where the next buffer starts

    def __cinit__(self, tuple consts, tuple ops, tuple indices, object delegate):
        cdef Py_ssize_t n
        if len(consts) != len(ops) + 1 or len(ops) != len(indices):
            raise ValueError("a program has one more constant than values, and one op per value")
        for const in consts:
            if not PyBytes_CheckExact(const):
                raise TypeError("a program's constants are bytes")
        depth = 0
        for op, index in zip(ops, indices):
            if op not in (OP_JSON, OP_STRING, OP_INT, OP_DELEGATE, OP_UTF8, OP_OPEN, OP_CLOSE, OP_ANY_INT, OP_ANY_BOOL):
                raise ValueError(f"unknown op {op!r}")
            if (index < 0) != (op in (OP_OPEN, OP_CLOSE)):
                raise ValueError("a value's index is not negative; an open's or a close's is -1")
            depth += 1 if op == OP_OPEN else -1 if op == OP_CLOSE else 0
            if not 0 <= depth <= MAX_DEPTH:
                raise ValueError(f"opens and closes nest at most {MAX_DEPTH} deep, a close after its open")
        if depth:
            raise ValueError("every open is closed")
        self.count = len(ops)
        self.needed = max(indices) + 1 if indices else 0
        self.consts = consts
        self.delegate = delegate
        self.hint = 256
        self.const_data = <const char**>PyMem_Malloc((self.count + 1) * sizeof(char*))
        self.const_size = <Py_ssize_t*>PyMem_Malloc((self.count + 1) * sizeof(Py_ssize_t))
        self.ops = <int*>PyMem_Malloc((self.count + 1) * sizeof(int))
        self.indices = <Py_ssize_t*>PyMem_Malloc((self.count + 1) * sizeof(Py_ssize_t))
        if not (self.const_data and self.const_size and self.ops and self.indices):
            raise MemoryError()
        for n in range(self.count + 1):
            self.const_data[n] = PyBytes_AS_STRING(consts[n])
            self.const_size[n] = PyBytes_GET_SIZE(consts[n])
        for n in range(self.count):
            self.ops[n] = ops[n]
            self.indices[n] = indices[n]

    def __dealloc__(self):
        PyMem_Free(self.const_data)
        PyMem_Free(self.const_size)
        PyMem_Free(self.ops)
        PyMem_Free(self.indices)

    def __call__(self, tuple values):
        cdef Buffer buf
        cdef Py_ssize_t n
        cdef int op
        cdef object value
        cdef Py_ssize_t opened[DEPTH_LIMIT]
        cdef int depth = 0
        if len(values) < self.needed:
            raise IndexError(f"a program of {self.needed} values was given {len(values)}")
        buf.size = 0
        buf.capacity = self.hint
        buf.data = <char*>PyMem_Malloc(buf.capacity)
        if buf.data == NULL:
            raise MemoryError()
        try:
            put(&buf, self.const_data[0], self.const_size[0])
            for n in range(self.count):
                op = self.ops[n]
                if op == OP_OPEN:
                    opened[depth] = buf.size
                    depth += 1
                    put(&buf, self.const_data[n + 1], self.const_size[n + 1])
                    continue
                if op == OP_CLOSE:
                    depth -= 1
                    close_length(&buf, opened[depth])
                    put(&buf, self.const_data[n + 1], self.const_size[n + 1])
                    continue
                value = <object>PyTuple_GET_ITEM(values, self.indices[n])
                if op == OP_UTF8:
                    put_utf8(&buf, value)
                elif op == OP_STRING:
                    put_json_string(&buf, value)
                elif op == OP_INT:
                    put_int(&buf, value)
                elif op == OP_JSON:
                    put_json(&buf, value, self.delegate)
                elif op == OP_ANY_INT:
                    put_any_int(&buf, value, self.delegate)
                elif op == OP_ANY_BOOL:
                    put(&buf, b"\x10\x01" if value else b"\x10\x00", 2)
                else:
                    put_bytes(&buf, self.delegate(value))
                put(&buf, self.const_data[n + 1], self.const_size[n + 1])
            if buf.size > self.hint:
                self.hint = buf.size
            return PyBytes_FromStringAndSize(buf.data, buf.size)
        finally:
            PyMem_Free(buf.data)


cdef class Shapes:
    """The programs of one layout's document shapes, made on first sight by `write(shape)`
    (shape: the fields' numbers and, when `typed`, their values' types; else None), at most
    `limit` of them: `encode` then answers None and the caller takes the reference."""

    cdef dict programs
    cdef object write
    cdef Py_ssize_t limit
    cdef bint typed

    def __init__(self, object write, Py_ssize_t limit, bint typed):
        self.programs = {}
        self.write = write
        self.limit = limit
        self.typed = typed

    def encode(self, dict fields):
        """The bytes of a compiled document's fields (number -> value, in the order set)."""
        cdef Py_ssize_t size = len(fields), n = 0, position = 0
        cdef PyObject* key
        cdef PyObject* value
        cdef tuple numbers = PyTuple_New(size)
        cdef tuple values = PyTuple_New(size)
        cdef object types = PyTuple_New(size) if self.typed else None
        while PyDict_Next(fields, &position, &key, &value):
            Py_INCREF(<object>key)
            PyTuple_SET_ITEM(numbers, n, <object>key)
            Py_INCREF(<object>value)
            PyTuple_SET_ITEM(values, n, <object>value)
            if self.typed:
                Py_INCREF(type(<object>value))
                PyTuple_SET_ITEM(types, n, type(<object>value))
            n += 1
        shape = (numbers, types)
        program = self.programs.get(shape)
        if program is None:
            if len(self.programs) >= self.limit:
                return None
            program = self.programs[shape] = self.write(shape)
        return program(values)
