/* The hot half of otlp_wire.py in C: a span's and a log record's OTLP protobuf bytes (and the
 * performance log's per-request JSON line with its log record, in one call).
 *
 * Why: otlp_wire.py writes the wire format directly, but in Python a typical
 * server span (10 attributes) still costs ~54 k instructions to encode and a
 * log record ~10 k: with everything on, the largest single part of the
 * telemetry's cost. These functions write the same bytes (tests compare them
 * with otlp_wire's Python functions and with the SDK's encoder) for the common
 * case and return None for anything else (events, links, trace state, values
 * that are not str/bool/int/float), which the Python functions then encode.
 *
 * Optional: the package works without it (setup.py builds it when a C compiler
 * is there); otlp_wire.SPEEDUPS says which is in use.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* -- a growable byte buffer, on the stack until it outgrows it ------------------------------- */

typedef struct {
    char *data;
    Py_ssize_t len, cap;
    char inline_data[1024];
} Buffer;

static void buffer_init(Buffer *b) {
    b->data = b->inline_data;
    b->len = 0;
    b->cap = sizeof b->inline_data;
}

static void buffer_free(Buffer *b) {
    if (b->data != b->inline_data)
        PyMem_Free(b->data);
}

static int grow(Buffer *b, Py_ssize_t extra) {
    Py_ssize_t cap = b->cap;
    while (cap < b->len + extra)
        cap *= 2;
    char *data = PyMem_Malloc(cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(data, b->data, b->len);
    buffer_free(b);
    b->data = data;
    b->cap = cap;
    return 0;
}

static inline int reserve(Buffer *b, Py_ssize_t extra) {
    return b->len + extra <= b->cap ? 0 : grow(b, extra);
}

static inline int put(Buffer *b, const void *bytes, Py_ssize_t n) {
    if (reserve(b, n) < 0)
        return -1;
    memcpy(b->data + b->len, bytes, n);
    b->len += n;
    return 0;
}

static inline int put_byte(Buffer *b, unsigned char byte) {
    if (reserve(b, 1) < 0)
        return -1;
    b->data[b->len++] = (char)byte;
    return 0;
}

static inline int put_varint(Buffer *b, uint64_t value) {
    if (reserve(b, 10) < 0)
        return -1;
    unsigned char *out = (unsigned char *)b->data + b->len;
    while (value >= 0x80) {
        *out++ = (unsigned char)(value | 0x80);
        value >>= 7;
    }
    *out++ = (unsigned char)value;
    b->len = (char *)out - b->data;
    return 0;
}

static inline int put_fixed64(Buffer *b, uint64_t value) {
    unsigned char out[8];
    for (int i = 0; i < 8; i++)
        out[i] = (unsigned char)(value >> (8 * i));
    return put(b, out, 8);
}

static inline int put_fixed32(Buffer *b, uint32_t value) {
    unsigned char out[4];
    for (int i = 0; i < 4; i++)
        out[i] = (unsigned char)(value >> (8 * i));
    return put(b, out, 4);
}

/* A length-delimited field whose payload is already in `payload`. */
static inline int put_field(Buffer *b, unsigned char tag, const char *payload, Py_ssize_t n) {
    if (put_byte(b, tag) < 0 || put_varint(b, (uint64_t)n) < 0)
        return -1;
    return put(b, payload, n);
}

/* A string field; an empty string is left out (proto3 default), as otlp_wire._string_field does. */
static int put_string(Buffer *b, unsigned char tag, PyObject *text) {
    Py_ssize_t n;
    const char *utf8 = PyUnicode_AsUTF8AndSize(text, &n);
    if (utf8 == NULL)
        return -1;
    return n ? put_field(b, tag, utf8, n) : 0;
}

/* An int as `size` (<= 16) big-endian bytes into `out` (trace and span ids). */
static int id_bytes(PyObject *id, unsigned char *out, size_t size) {
    if (!PyLong_Check(id)) {
        PyErr_SetString(PyExc_TypeError, "ids are ints");
        return -1;
    }
#if PY_VERSION_HEX >= 0x030D0000
    return PyLong_AsNativeBytes(id, out, (Py_ssize_t)size, Py_ASNATIVEBYTES_BIG_ENDIAN | Py_ASNATIVEBYTES_UNSIGNED_BUFFER
                                                               | Py_ASNATIVEBYTES_REJECT_NEGATIVE) < 0 ? -1 : 0;
#else
    return _PyLong_AsByteArray((PyLongObject *)id, out, size, 0, 0);
#endif
}

static int put_id(Buffer *b, PyObject *id, size_t size) {
    unsigned char out[16];
    return id_bytes(id, out, size) < 0 ? -1 : put(b, out, (Py_ssize_t)size);
}

/* Attribute names, interned once at import (PyInit__wire). */
static PyObject *s_context, *s_parent, *s_name, *s_kind, *s_start_time, *s_end_time, *s_attributes, *s_events,
    *s_links, *s_status, *s_trace_id, *s_span_id, *s_trace_state, *s_is_remote, *s_value_, *s_status_code,
    *s_description, *s__status_code, *s__description, *s_dropped, *s__resource, *s__instrumentation_scope, *s__dq, *s__dict;

/* -- attributes ------------------------------------------------------------------------------ */

/* Written: 1; a value this module does not encode (the caller falls back to Python): 0; error: -1. */
#define DONE 1
#define NOT_HERE 0

/* AnyValue: str, bool, int (int64) and float; anything else is NOT_HERE. */
static int put_any_value(Buffer *b, PyObject *value) {
    if (PyUnicode_CheckExact(value)) {
        Py_ssize_t n;
        const char *utf8 = PyUnicode_AsUTF8AndSize(value, &n);
        if (utf8 == NULL)
            return -1;
        return put_field(b, 0x0a, utf8, n) < 0 ? -1 : DONE; /* a oneof member: written even when empty */
    }
    if (PyBool_Check(value))
        return put(b, value == Py_True ? "\x10\x01" : "\x10\x00", 2) < 0 ? -1 : DONE;
    if (PyLong_CheckExact(value)) {
        int overflow;
        long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow)
            return NOT_HERE;
        if (number == -1 && PyErr_Occurred())
            return -1;
        return put_byte(b, 0x18) < 0 || put_varint(b, (uint64_t)number) < 0 ? -1 : DONE;
    }
    if (PyFloat_CheckExact(value)) {
        double number = PyFloat_AS_DOUBLE(value);
        uint64_t bits;
        memcpy(&bits, &number, sizeof bits);
        return put_byte(b, 0x21) < 0 || put_fixed64(b, bits) < 0 ? -1 : DONE;
    }
    return NOT_HERE;
}

static Py_ssize_t varint_size(uint64_t value) {
    Py_ssize_t n = 1;
    while (value >= 0x80) {
        value >>= 7;
        n++;
    }
    return n;
}

/* Repeated KeyValue fields under `tag` from a dict of str keys. */
static int put_attributes(Buffer *b, unsigned char tag, PyObject *dict) {
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(dict, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key))
            return NOT_HERE;
        Py_ssize_t key_size;
        const char *key_utf8 = PyUnicode_AsUTF8AndSize(key, &key_size);
        if (key_utf8 == NULL)
            return -1;
        Buffer any;  /* the AnyValue first: its size frames both fields */
        buffer_init(&any);
        int done = put_any_value(&any, value);
        if (done == DONE) {
            Py_ssize_t size = (key_size ? 1 + varint_size((uint64_t)key_size) + key_size : 0)
                              + 1 + varint_size((uint64_t)any.len) + any.len;
            if (put_byte(b, tag) < 0 || put_varint(b, (uint64_t)size) < 0
                || (key_size && put_field(b, 0x0a, key_utf8, key_size) < 0)
                || put_field(b, 0x12, any.data, any.len) < 0)
                done = -1;
        }
        buffer_free(&any);
        if (done != DONE)
            return done;
    }
    return DONE;
}

/* The `_dict` of a BoundedAttributes (the SDK's and LeanAttributes), or a plain dict. New reference. */
static PyObject *attribute_dict(PyObject *attrs) {
    if (PyDict_CheckExact(attrs)) {
        Py_INCREF(attrs);
        return attrs;
    }
    PyObject *dict = PyObject_GetAttr(attrs, s__dict);
    if (dict == NULL || !PyDict_CheckExact(dict)) {
        Py_XDECREF(dict);
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    return dict;
}

/* -- spans ----------------------------------------------------------------------------------- */

#if PY_VERSION_HEX >= 0x030D0000
#define lookup_attr PyObject_GetOptionalAttr /* 1 found, 0 not there (no error set), -1 error */
#else
#define lookup_attr _PyObject_LookupAttr
#endif

#define HAS_IS_REMOTE 0x100
#define IS_REMOTE 0x200

/* Whether `obj` holds anything: 1, 0, or -1 on error. The SDK's BoundedList and TraceState keep their
 * items in a deque (`_dq`) and a dict (`_dict`) whose length is read in C; their own `__len__` is a
 * Python call each. */
static int sized(PyObject *obj, const char *what) {
    PyObject *inner = NULL;
    if (lookup_attr(obj, s__dq, &inner) == 0 && lookup_attr(obj, s__dict, &inner) == 0)
        inner = NULL;
    if (PyErr_Occurred())
        return -1;
    Py_ssize_t n = PyObject_Length(inner != NULL ? inner : obj);
    Py_XDECREF(inner);
    if (n < 0)
        PyErr_Format(PyExc_TypeError, "span %s has no length", what);
    return (int)(n > 0 ? 1 : n);
}

/* A non-negative int attribute of `obj` (0 when None or missing). */
static int get_count(PyObject *obj, PyObject *name, uint64_t *out) {
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL) {
        PyErr_Clear();
        *out = 0;
        return 0;
    }
    *out = value == Py_None ? 0 : PyLong_AsUnsignedLongLong(value);
    Py_DECREF(value);
    return *out == (uint64_t)-1 && PyErr_Occurred() ? -1 : 0;
}

/* A SpanContext field: SpanContext is a 6-tuple (trace_id, span_id, is_remote, trace_flags, trace_state,
 * is_valid) read by index, as its properties do, skipping a Python call each; by name otherwise. */
static PyObject *context_field(PyObject *context, Py_ssize_t index, PyObject *name) {
    if (PyTuple_Check(context) && PyTuple_GET_SIZE(context) == 6)
        return Py_NewRef(PyTuple_GET_ITEM(context, index));
    return PyObject_GetAttr(context, name);
}

/* `obj.<private>` (the SDK's field behind a property), else `obj.<public>`. */
static PyObject *field_or_property(PyObject *obj, PyObject *private_name, PyObject *public_name) {
    PyObject *value = PyObject_GetAttr(obj, private_name);
    if (value == NULL && PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear();
        value = PyObject_GetAttr(obj, public_name);
    }
    return value;
}

/* The Span message of an SDK ReadableSpan (its fields, not its properties), into `b`. */
static int put_span(Buffer *b, PyObject *span) {
    int result = -1;
    PyObject *context = NULL, *parent = NULL, *name = NULL, *kind = NULL, *kind_value = NULL, *start = NULL,
             *end = NULL, *attrs = NULL, *dict = NULL, *events = NULL, *links = NULL, *status = NULL,
             *trace_id = NULL, *span_id = NULL, *trace_state = NULL, *code = NULL, *code_value = NULL,
             *description = NULL;
    uint64_t dropped;
    if (!(context = PyObject_GetAttr(span, s_context)) || !(parent = PyObject_GetAttr(span, s_parent))
        || !(name = PyObject_GetAttr(span, s_name)) || !(kind = PyObject_GetAttr(span, s_kind))
        || !(start = PyObject_GetAttr(span, s_start_time)) || !(end = PyObject_GetAttr(span, s_end_time))
        || !(attrs = PyObject_GetAttr(span, s_attributes)) || !(events = PyObject_GetAttr(span, s_events))
        || !(links = PyObject_GetAttr(span, s_links)) || !(status = PyObject_GetAttr(span, s_status))
        || !(trace_id = context_field(context, 0, s_trace_id)) || !(span_id = context_field(context, 1, s_span_id))
        || !(trace_state = context_field(context, 4, s_trace_state))) {
        if (PyErr_ExceptionMatches(PyExc_AttributeError)) { /* not the SDK's span: read through its properties */
            PyErr_Clear();
            result = NOT_HERE;
        }
        goto done;
    }
    int has_events, has_links = 0, has_state = 0; /* each asked only while no error is pending */
    if ((has_events = sized(events, "events")) < 0 || (has_links = sized(links, "links")) < 0
        || (trace_state != Py_None && (has_state = sized(trace_state, "trace state")) < 0))
        goto done;
    if (has_events || has_links || has_state || !PyUnicode_Check(name)) {
        result = NOT_HERE;
        goto done;
    }
    if (put(b, "\x0a\x10", 2) < 0 || put_id(b, trace_id, 16) < 0 || put(b, "\x12\x08", 2) < 0
        || put_id(b, span_id, 8) < 0)
        goto done;
    int remote = 0;
    if (parent != Py_None) {
        PyObject *parent_id = context_field(parent, 1, s_span_id), *is_remote = NULL;
        int ok = parent_id != NULL && put(b, "\x22\x08", 2) == 0 && put_id(b, parent_id, 8) == 0
                 && (is_remote = context_field(parent, 2, s_is_remote)) != NULL
                 && (remote = PyObject_IsTrue(is_remote)) >= 0;
        Py_XDECREF(parent_id);
        Py_XDECREF(is_remote);
        if (!ok)
            goto done;
    }
    if (put_string(b, 0x2a, name) < 0)
        goto done;
    if (!(kind_value = PyObject_GetAttr(kind, s_value_)))
        goto done;
    long kind_number = PyLong_AsLong(kind_value);
    if (kind_number == -1 && PyErr_Occurred())
        goto done;
    if (put_byte(b, 0x30) < 0 || put_varint(b, (uint64_t)(kind_number + 1)) < 0)
        goto done;
    if (start != Py_None && PyObject_IsTrue(start)) {
        if (put_byte(b, 0x39) < 0 || put_fixed64(b, PyLong_AsUnsignedLongLong(start)) < 0 || PyErr_Occurred())
            goto done;
    }
    if (end != Py_None && PyObject_IsTrue(end)) {
        if (put_byte(b, 0x41) < 0 || put_fixed64(b, PyLong_AsUnsignedLongLong(end)) < 0 || PyErr_Occurred())
            goto done;
    }
    if (attrs != Py_None) {
        if (!(dict = attribute_dict(attrs)))
            goto done;
        if (dict == Py_None) {
            result = NOT_HERE;
            goto done;
        }
        int written = put_attributes(b, 0x4a, dict);
        if (written != DONE) {
            result = written;
            goto done;
        }
        if (get_count(attrs, s_dropped, &dropped) < 0)
            goto done;
        if (dropped && (put_byte(b, 0x50) < 0 || put_varint(b, dropped) < 0))
            goto done;
    }
    if (get_count(events, s_dropped, &dropped) < 0 || (dropped && (put_byte(b, 0x60) < 0 || put_varint(b, dropped) < 0)))
        goto done;
    if (get_count(links, s_dropped, &dropped) < 0 || (dropped && (put_byte(b, 0x70) < 0 || put_varint(b, dropped) < 0)))
        goto done;
    /* Status: message (2), code (3); the field itself is always written */
    if (!(code = field_or_property(status, s__status_code, s_status_code))
        || !(code_value = PyObject_GetAttr(code, s_value_))
        || !(description = field_or_property(status, s__description, s_description)))
        goto done;
    Buffer status_body;
    buffer_init(&status_body);
    long code_number = PyLong_AsLong(code_value);
    int ok = !(code_number == -1 && PyErr_Occurred())
             && (description == Py_None || !PyUnicode_Check(description) || put_string(&status_body, 0x12, description) == 0)
             && (code_number == 0 || (put_byte(&status_body, 0x18) == 0 && put_varint(&status_body, (uint64_t)code_number) == 0))
             && put_field(b, 0x7a, status_body.data, status_body.len) == 0;
    buffer_free(&status_body);
    if (!ok)
        goto done;
    if (put(b, "\x85\x01", 2) < 0 || put_fixed32(b, HAS_IS_REMOTE | (remote ? IS_REMOTE : 0)) < 0)
        goto done;
    result = DONE;
done:
    Py_XDECREF(context);
    Py_XDECREF(parent);
    Py_XDECREF(name);
    Py_XDECREF(kind);
    Py_XDECREF(kind_value);
    Py_XDECREF(start);
    Py_XDECREF(end);
    Py_XDECREF(attrs);
    Py_XDECREF(dict);
    Py_XDECREF(events);
    Py_XDECREF(links);
    Py_XDECREF(status);
    Py_XDECREF(trace_id);
    Py_XDECREF(span_id);
    Py_XDECREF(trace_state);
    Py_XDECREF(code);
    Py_XDECREF(code_value);
    Py_XDECREF(description);
    return result;
}

/* bytes of `b`'s content framed as a length-delimited field `tag`, or None for NOT_HERE. */
static PyObject *framed(Buffer *b, int written, unsigned char tag) {
    PyObject *out = NULL;
    if (written == DONE) {
        Buffer head;
        buffer_init(&head);
        if (put_byte(&head, tag) == 0 && put_varint(&head, (uint64_t)b->len) == 0) {
            out = PyBytes_FromStringAndSize(NULL, head.len + b->len);
            if (out != NULL) {
                memcpy(PyBytes_AS_STRING(out), head.data, head.len);
                memcpy(PyBytes_AS_STRING(out) + head.len, b->data, b->len);
            }
        }
        buffer_free(&head);
    } else if (written == NOT_HERE) {
        out = Py_NewRef(Py_None);
    }
    buffer_free(b);
    return out;
}

PyDoc_STRVAR(span_field_doc,
             "span_field(span) -> bytes | None\n\n"
             "An SDK span as a framed ScopeSpans.spans field; None when it has events, links, a trace state\n"
             "or an attribute value other than str/bool/int/float (otlp_wire's Python encoder takes those).");

static PyObject *span_field(PyObject *module, PyObject *span) {
    Buffer b;
    buffer_init(&b);
    return framed(&b, put_span(&b, span), 0x12);
}

PyDoc_STRVAR(span_fields_doc,
             "span_fields(spans) -> (resource, scope, bytes) | None\n\n"
             "A batch of SDK spans of one resource and one instrumentation scope (by identity), each framed as\n"
             "span_field frames it, concatenated; None when the batch is empty or mixed, or a span is not one\n"
             "span_field encodes.");

static PyObject *span_fields(PyObject *module, PyObject *spans) {
    PyObject *seq = PySequence_Fast(spans, "spans must be a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    PyObject *resource = NULL, *scope = NULL, *out = NULL;
    Buffer all;
    buffer_init(&all);
    int result = n > 0 ? DONE : NOT_HERE;
    for (Py_ssize_t i = 0; i < n && result == DONE; i++) {
        PyObject *item_resource = PyObject_GetAttr(items[i], s__resource);
        PyObject *item_scope = item_resource ? PyObject_GetAttr(items[i], s__instrumentation_scope) : NULL;
        if (item_scope == NULL) {
            Py_XDECREF(item_resource);
            result = PyErr_ExceptionMatches(PyExc_AttributeError) ? NOT_HERE : -1;
            if (result == NOT_HERE)
                PyErr_Clear();
            break;
        }
        if (i == 0) {
            resource = item_resource;
            scope = item_scope;
        } else {
            int same = item_resource == resource && item_scope == scope;
            Py_DECREF(item_resource);
            Py_DECREF(item_scope);
            if (!same) {
                result = NOT_HERE;
                break;
            }
        }
        Buffer one;
        buffer_init(&one);
        int written = put_span(&one, items[i]);
        if (written == DONE && put_field(&all, 0x12, one.data, one.len) < 0)
            written = -1;
        buffer_free(&one);
        result = written;
    }
    if (result == DONE)
        out = Py_BuildValue("(OOy#)", resource, scope, all.data, all.len);
    else if (result == NOT_HERE)
        out = Py_NewRef(Py_None);
    Py_XDECREF(resource);
    Py_XDECREF(scope);
    Py_DECREF(seq);
    buffer_free(&all);
    return out;
}

/* -- log records ----------------------------------------------------------------------------- */

static int put_log_record(Buffer *b, PyObject *const *args) {
    PyObject *timestamp = args[0], *observed = args[1], *severity = args[2], *severity_text = args[3],
             *body = args[4], *attrs = args[5], *dropped = args[6], *flags = args[7], *trace_id = args[8],
             *span_id = args[9], *event_name = args[10];
    int truth;
#define TRUTHY(obj) ((obj) != Py_None && (truth = PyObject_IsTrue(obj)) != 0)
    if (!PyUnicode_Check(body) || !(attrs == Py_None || PyBytes_Check(attrs) || PyDict_CheckExact(attrs)))
        return NOT_HERE;
    if (TRUTHY(timestamp) && (truth < 0 || put_byte(b, 0x09) < 0 || put_fixed64(b, PyLong_AsUnsignedLongLong(timestamp)) < 0))
        return -1;
    if (TRUTHY(severity) && (truth < 0 || put_byte(b, 0x10) < 0 || put_varint(b, (uint64_t)PyLong_AsLongLong(severity)) < 0))
        return -1;
    if (severity_text != Py_None && put_string(b, 0x1a, severity_text) < 0)
        return -1;
    /* body: an AnyValue holding a string */
    Py_ssize_t n;
    const char *utf8 = PyUnicode_AsUTF8AndSize(body, &n);
    if (utf8 == NULL)
        return -1;
    Buffer value;
    buffer_init(&value);
    int ok = put_field(&value, 0x0a, utf8, n) == 0 && put_field(b, 0x2a, value.data, value.len) == 0;
    buffer_free(&value);
    if (!ok)
        return -1;
    if (PyBytes_Check(attrs)) {
        if (put(b, PyBytes_AS_STRING(attrs), PyBytes_GET_SIZE(attrs)) < 0)
            return -1;
    } else if (attrs != Py_None) {
        int written = put_attributes(b, 0x32, attrs);
        if (written != DONE)
            return written;
    }
    if (TRUTHY(dropped) && (truth < 0 || put_byte(b, 0x38) < 0 || put_varint(b, (uint64_t)PyLong_AsLongLong(dropped)) < 0))
        return -1;
    if (TRUTHY(flags) && (truth < 0 || put_byte(b, 0x45) < 0 || put_fixed32(b, (uint32_t)PyLong_AsUnsignedLong(flags)) < 0))
        return -1;
    if (TRUTHY(trace_id) && (truth < 0 || put(b, "\x4a\x10", 2) < 0 || put_id(b, trace_id, 16) < 0))
        return -1;
    if (TRUTHY(span_id) && (truth < 0 || put(b, "\x52\x08", 2) < 0 || put_id(b, span_id, 8) < 0))
        return -1;
    if (TRUTHY(observed) && (truth < 0 || put_byte(b, 0x59) < 0 || put_fixed64(b, PyLong_AsUnsignedLongLong(observed)) < 0))
        return -1;
    if (event_name != Py_None && put_string(b, 0x62, event_name) < 0)
        return -1;
#undef TRUTHY
    return PyErr_Occurred() ? -1 : DONE;
}

PyDoc_STRVAR(log_record_doc,
             "log_record(timestamp, observed, severity, severity_text, body, attrs, dropped, flags, trace_id,\n"
             "           span_id, event_name) -> bytes | None\n\n"
             "otlp_wire.log_record's LogRecord message for a str body and attributes given as encoded bytes\n"
             "or a dict of str/bool/int/float values; None otherwise.");

PyDoc_STRVAR(log_record_field_doc,
             "log_record_field(...) -> bytes | None\n\n"
             "log_record(...) framed as a ScopeLogs.log_records field, ready to splice into a request.");

static PyObject *log_record_bytes(PyObject *const *args, Py_ssize_t nargs, int as_field) {
    if (nargs != 11) {
        PyErr_Format(PyExc_TypeError, "log_record takes 11 arguments (%zd given)", nargs);
        return NULL;
    }
    Buffer b;
    buffer_init(&b);
    int written = put_log_record(&b, args);
    if (as_field)
        return framed(&b, written, 0x12);
    PyObject *out = NULL;
    if (written == DONE)
        out = PyBytes_FromStringAndSize(b.data, b.len);
    else if (written == NOT_HERE)
        out = Py_NewRef(Py_None);
    buffer_free(&b);
    return out;
}

static PyObject *log_record(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    return log_record_bytes(args, nargs, 0);
}

static PyObject *log_record_field(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    return log_record_bytes(args, nargs, 1);
}

/* -- the performance log's request: its JSON line and its OTel log record ------------------- */

static int put_text(Buffer *b, PyObject *text) {
    Py_ssize_t n;
    const char *utf8 = PyUnicode_AsUTF8AndSize(text, &n);
    return utf8 == NULL ? -1 : put(b, utf8, n);
}

/* `id` as 2*size lowercase hex digits in quotes, or null when it is 0 or None. */
static int put_hex_id(Buffer *b, PyObject *id, size_t size) {
    static const char digits[] = "0123456789abcdef";
    if (id == Py_None)
        return put(b, "null", 4);
    int truth = PyObject_IsTrue(id);
    if (truth <= 0)
        return truth < 0 ? -1 : put(b, "null", 4);
    unsigned char raw[16];
    if (id_bytes(id, raw, size) < 0 || reserve(b, (Py_ssize_t)(2 * size + 2)) < 0)
        return -1;
    char *out = b->data + b->len;
    *out++ = '"';
    for (size_t i = 0; i < size; i++) {
        *out++ = digits[raw[i] >> 4];
        *out++ = digits[raw[i] & 0xf];
    }
    *out++ = '"';
    b->len = out - b->data;
    return 0;
}

/* `ts` (seconds since the epoch, >= 0) as perflog._iso writes it: "YYYY-mm-ddTHH:MM:SS.mmmZ" (UTC, the
 * milliseconds truncated); the text up to the second is kept for the next call (written under the GIL). */
static long long iso_second = -1;
static char iso_text[64];
static size_t iso_len;

static int put_iso_time(Buffer *b, double ts) {
    if (!(ts >= 0 && ts < 253402300800.0)) { /* years 1970-9999; NaN fails too */
        PyErr_SetString(PyExc_ValueError, "timestamp out of range");
        return -1;
    }
    long long second = (long long)ts;
    if (second != iso_second) {
        time_t t = (time_t)second;
        struct tm tm;
        if (gmtime_r(&t, &tm) == NULL || !(iso_len = strftime(iso_text, sizeof iso_text, "%Y-%m-%dT%H:%M:%S", &tm))) {
            PyErr_SetString(PyExc_ValueError, "timestamp out of range");
            return -1;
        }
        iso_second = second;
    }
    int millis = (int)((ts - (double)second) * 1000);
    char tail[5] = {'.', (char)('0' + millis / 100), (char)('0' + millis / 10 % 10), (char)('0' + millis % 10), 'Z'};
    return put(b, iso_text, (Py_ssize_t)iso_len) < 0 ? -1 : put(b, tail, 5);
}

PyDoc_STRVAR(request_record_doc,
             "request_record(ts, shape, duration_ms, trace_id, span_id, flags, timestamp, observed, severity,\n"
             "               severity_text, event_name) -> (str, bytes | None)\n\n"
             "perflog._request_record in one call. The line: '{\"ts\":\"' + perflog._iso(ts) +\n"
             "shape.line_before + f'{duration_ms:.3f}' + shape.line_after + the trace id as 32 hex digits in\n"
             "quotes (or null) + ',\"span_id\":' + 16 hex digits (or null) + '}'. The record (None when\n"
             "timestamp is None): log_record_field's bytes with the body shape.body_head + repr(d) + ' ms' and\n"
             "the attributes shape.attrs_head + d's 8 bytes + shape.attrs_tail, d = round(duration_ms, 3).");

static PyObject *request_record(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 11) {
        PyErr_Format(PyExc_TypeError, "request_record takes 11 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *shape = args[1], *timestamp = args[6];
    if (!PyTuple_Check(shape) || PyTuple_GET_SIZE(shape) != 5 || !PyBytes_Check(PyTuple_GET_ITEM(shape, 3))
        || !PyBytes_Check(PyTuple_GET_ITEM(shape, 4))) {
        PyErr_SetString(PyExc_TypeError, "shape must be a perflog._Shape");
        return NULL;
    }
    double ts = PyFloat_AsDouble(args[0]), duration = PyFloat_AsDouble(args[2]);
    if ((ts == -1.0 || duration == -1.0) && PyErr_Occurred())
        return NULL;
    char *number = PyOS_double_to_string(duration, 'f', 3, 0, NULL); /* what f"{x:.3f}" writes */
    if (number == NULL)
        return NULL;
    PyObject *line = NULL, *field = NULL, *body = NULL, *attrs = NULL, *out = NULL;
    char *shortest = NULL;
    Buffer b;
    buffer_init(&b);
    int ok = put(&b, "{\"ts\":\"", 7) == 0 && put_iso_time(&b, ts) == 0
             && put_text(&b, PyTuple_GET_ITEM(shape, 0)) == 0 && put(&b, number, (Py_ssize_t)strlen(number)) == 0
             && put_text(&b, PyTuple_GET_ITEM(shape, 1)) == 0 && put_hex_id(&b, args[3], 16) == 0
             && put(&b, ",\"span_id\":", 11) == 0 && put_hex_id(&b, args[4], 8) == 0 && put_byte(&b, '}') == 0;
    if (!ok || !(line = PyUnicode_DecodeUTF8(b.data, b.len, "strict")))
        goto done;
    if (timestamp == Py_None) {
        out = PyTuple_Pack(2, line, Py_None);
        goto done;
    }
    /* round(x, 3) is the double nearest the correctly rounded 3-decimal text: the text the line has */
    double rounded = PyOS_string_to_double(number, NULL, NULL);
    if (rounded == -1.0 && PyErr_Occurred())
        goto done;
    /* repr(rounded): below 1e12 doubles are dense enough that no shorter text than the 3-decimal one (its
     * trailing zeros dropped, one kept after the point) reads back as it; above, Python's own repr */
    const char *text = number;
    Py_ssize_t text_len = (Py_ssize_t)strlen(number);
    if (rounded >= 0 && rounded < 1e12) {
        while (number[text_len - 1] == '0' && number[text_len - 2] != '.')
            text_len--;
    } else {
        if (!(shortest = PyOS_double_to_string(rounded, 'r', 0, Py_DTSF_ADD_DOT_0, NULL)))
            goto done;
        text = shortest;
        text_len = (Py_ssize_t)strlen(shortest);
    }
    Buffer body_text;
    buffer_init(&body_text);
    if (put_text(&body_text, PyTuple_GET_ITEM(shape, 2)) == 0 && put(&body_text, text, text_len) == 0
        && put(&body_text, " ms", 3) == 0)
        body = PyUnicode_DecodeUTF8(body_text.data, body_text.len, "strict");
    buffer_free(&body_text);
    if (body == NULL)
        goto done;
    PyObject *head = PyTuple_GET_ITEM(shape, 3), *tail = PyTuple_GET_ITEM(shape, 4);
    Py_ssize_t head_len = PyBytes_GET_SIZE(head), tail_len = PyBytes_GET_SIZE(tail);
    if (!(attrs = PyBytes_FromStringAndSize(NULL, head_len + 8 + tail_len)))
        goto done;
    char *bytes = PyBytes_AS_STRING(attrs);
    memcpy(bytes, PyBytes_AS_STRING(head), head_len);
    if (PyFloat_Pack8(rounded, bytes + head_len, 1) < 0) /* little-endian, as struct's "<d" */
        goto done;
    memcpy(bytes + head_len + 8, PyBytes_AS_STRING(tail), tail_len);
    PyObject *const record[11] = {timestamp, args[7], args[8], args[9], body, attrs, Py_None, args[5], args[3],
                                  args[4], args[10]};
    Buffer r;
    buffer_init(&r);
    if ((field = framed(&r, put_log_record(&r, record), 0x12)) != NULL)
        out = PyTuple_Pack(2, line, field);
done:
    PyMem_Free(number);
    PyMem_Free(shortest);
    buffer_free(&b);
    Py_XDECREF(line);
    Py_XDECREF(field);
    Py_XDECREF(body);
    Py_XDECREF(attrs);
    return out;
}

/* -- module ---------------------------------------------------------------------------------- */

static PyMethodDef methods[] = {
    {"span_field", (PyCFunction)span_field, METH_O, span_field_doc},
    {"span_fields", (PyCFunction)span_fields, METH_O, span_fields_doc},
    {"log_record", (PyCFunction)(void (*)(void))log_record, METH_FASTCALL, log_record_doc},
    {"log_record_field", (PyCFunction)(void (*)(void))log_record_field, METH_FASTCALL, log_record_field_doc},
    {"request_record", (PyCFunction)(void (*)(void))request_record, METH_FASTCALL, request_record_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "otel_mcp.telemetry._wire", "OTLP protobuf encoding of spans and log records, in C.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__wire(void) {
    struct {
        PyObject **slot;
        const char *text;
    } names[] = {
        {&s_context, "_context"}, {&s_parent, "_parent"}, {&s_name, "_name"}, {&s_kind, "_kind"},
        {&s_start_time, "_start_time"}, {&s_end_time, "_end_time"}, {&s_attributes, "_attributes"},
        {&s_events, "_events"}, {&s_links, "_links"}, {&s_status, "_status"}, {&s_trace_id, "trace_id"},
        {&s_span_id, "span_id"}, {&s_trace_state, "trace_state"}, {&s_is_remote, "is_remote"},
        {&s_value_, "_value_"}, {&s_status_code, "status_code"}, {&s_description, "description"},
        {&s__status_code, "_status_code"}, {&s__description, "_description"}, {&s_dropped, "dropped"}, {&s__resource, "_resource"}, {&s__instrumentation_scope, "_instrumentation_scope"},
        {&s__dq, "_dq"}, {&s__dict, "_dict"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(*names[i].slot = PyUnicode_InternFromString(names[i].text)))
            return NULL;
    }
    return PyModule_Create(&module_def);
}
