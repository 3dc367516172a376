/* willowisp._native: optional C helpers for the per-event and per-record costs.
 *
 * Used by the Python agent (record, record_user, columns) and by the format's encoder
 * (encode_records); both have pure-Python equivalents that are the reference.
 *
 *  record(kind, res, arg, depth)  the hot-path write: clock, the calling thread's
 *                                 ThreadState (kept in the thread state dict), the source
 *                                 location of the frame `depth` levels up, one 48-byte row
 *                                 into the thread's bytearray. ~4x cheaper than the same
 *                                 work in Python bytecode.
 *  columns(rows, locmap)          the flusher's split of rows into the file's columns
 *                                 (kind u8, unit u32, time u64, res u32, arg i64, loc u32)
 *                                 with location keys mapped through locmap, in one pass.
 *
 * The pure-Python implementation in rows.py and recorder.py is the reference and the fallback (other
 * interpreters, no compiler); tests run both. Row layout: struct "<qqqqqQ" = time, kind,
 * unit, res, arg, key, with key = id(code) << 16 | (f_lasti & 0xFFFF).
 *
 * Code objects named by a key must stay alive until the flusher resolves them: they are
 * kept in a pointer set here (a reference each, never released: bounded by the program's
 * size), the same promise rows.CODE_IDS makes in Python.
 *
 *  forward_sigterm()              puts a C handler in place of CPython's for SIGTERM that
 *  wait_sigterm()                 hands every SIGTERM, whichever thread the kernel gave it,
 *                                 to an agent thread blocked in wait_sigterm() (see the
 *                                 comment at term_take).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>
#include <structmember.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ROW 48

static PyObject *state_key;   /* interned "willowisp.thread_state" */
static PyObject *adopt_cb;    /* Python: () -> ThreadState, for threads we did not start */
static PyObject *overflow_cb; /* Python: (st, t, kind, res, arg, key) -> None */
static PyObject *register_code_cb; /* Python: (code) -> None, keeps id -> code for the flusher */
static PyObject *classify_cb; /* Python: (code) -> bool, True for standard-library/agent code */
/* The boundary gate (hops mode with boundaries): a ContextVar, or NULL when every event is
 * recorded. When set, concurrency events (kinds below 20 and 30..39) are recorded only
 * while the variable holds something other than None; hop and agent events always are. */
static PyObject *gate_var;

/* An open-addressing set of code-object pointers already handed to register_code_cb. */
static PyObject **codes = NULL;
static size_t codes_cap = 0, codes_len = 0;

static int codes_grow(void) {
    size_t cap = codes_cap ? codes_cap * 2 : 1024;
    PyObject **t = PyMem_Calloc(cap, sizeof(PyObject *));
    if (t == NULL) { PyErr_NoMemory(); return -1; }
    for (size_t i = 0; i < codes_cap; i++) {
        PyObject *c = codes[i];
        if (c == NULL) continue;
        size_t h = ((size_t)c >> 4) & (cap - 1);
        while (t[h] != NULL) h = (h + 1) & (cap - 1);
        t[h] = c;
    }
    PyMem_Free(codes);
    codes = t;
    codes_cap = cap;
    return 0;
}

/* Make sure `code` is known (kept alive, and id -> code registered in Python). */
static int keep_code(PyObject *code) {
    if (codes_len * 10 >= codes_cap * 7 && codes_grow() < 0) return -1;
    size_t h = ((size_t)code >> 4) & (codes_cap - 1);
    while (codes[h] != NULL) {
        if (codes[h] == code) return 0;
        h = (h + 1) & (codes_cap - 1);
    }
    if (register_code_cb != NULL) {
        PyObject *r = PyObject_CallOneArg(register_code_cb, code);
        if (r == NULL) return -1;
        Py_DECREF(r);
    }
    Py_INCREF(code);
    codes[h] = code;
    codes_len++;
    return 0;
}

/* Code objects classified for record_user: pointer -> 1 internal, 2 the program's own. */
static PyObject **cls_keys = NULL;
static unsigned char *cls_vals = NULL;
static size_t cls_cap = 0, cls_len = 0;

static int cls_grow(void) {
    size_t cap = cls_cap ? cls_cap * 2 : 1024;
    PyObject **k = PyMem_Calloc(cap, sizeof(PyObject *));
    unsigned char *v = PyMem_Calloc(cap, 1);
    if (k == NULL || v == NULL) { PyMem_Free(k); PyMem_Free(v); PyErr_NoMemory(); return -1; }
    for (size_t i = 0; i < cls_cap; i++) {
        if (cls_keys[i] == NULL) continue;
        size_t h = ((size_t)cls_keys[i] >> 4) & (cap - 1);
        while (k[h] != NULL) h = (h + 1) & (cap - 1);
        k[h] = cls_keys[i];
        v[h] = cls_vals[i];
    }
    PyMem_Free(cls_keys);
    PyMem_Free(cls_vals);
    cls_keys = k; cls_vals = v; cls_cap = cap;
    return 0;
}

/* 1 if `code` is internal (skip its frame), 0 if it is the program's, -1 on error. */
static int is_internal(PyObject *code) {
    if (cls_len * 10 >= cls_cap * 7 && cls_grow() < 0) return -1;
    size_t h = ((size_t)code >> 4) & (cls_cap - 1);
    while (cls_keys[h] != NULL) {
        if (cls_keys[h] == code) return cls_vals[h] == 1;
        h = (h + 1) & (cls_cap - 1);
    }
    PyObject *r = PyObject_CallOneArg(classify_cb, code);
    if (r == NULL) return -1;
    int internal = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (internal < 0) return -1;
    Py_INCREF(code); /* kept: the pointer must keep naming this code object */
    cls_keys[h] = code;
    cls_vals[h] = internal ? 1 : 2;
    cls_len++;
    return internal;
}

static inline long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Attribute offsets of rows.ThreadState's slots, found once by set_callbacks. */
static Py_ssize_t off_buf = -1, off_used, off_end, off_unit;

static Py_ssize_t slot_offset(PyObject *cls, const char *name) {
    PyObject *d = PyObject_GetAttrString(cls, name);
    if (d == NULL) return -1;
    if (!Py_IS_TYPE(d, &PyMemberDescr_Type)) {
        Py_DECREF(d);
        PyErr_Format(PyExc_TypeError, "ThreadState.%s is not a slot", name);
        return -1;
    }
    Py_ssize_t off = ((PyMemberDescrObject *)d)->d_member->offset;
    Py_DECREF(d);
    return off;
}

#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

static PyObject *current_state(void) { /* borrowed */
    PyObject *dict = PyThreadState_GetDict();
    if (dict == NULL) return NULL;
    PyObject *st = PyDict_GetItemWithError(dict, state_key);
    if (st != NULL || PyErr_Occurred()) return st;
    if (adopt_cb == NULL) { PyErr_SetString(PyExc_RuntimeError, "fastpath not initialised"); return NULL; }
    st = PyObject_CallNoArgs(adopt_cb); /* it stores the state with set_state */
    if (st == NULL) return NULL;
    Py_DECREF(st);
    return PyDict_GetItemWithError(dict, state_key);
}

static PyObject *fp_set_state(PyObject *self, PyObject *st) {
    PyObject *dict = PyThreadState_GetDict();
    if (dict == NULL) { PyErr_SetString(PyExc_RuntimeError, "no thread state dict"); return NULL; }
    if (st == Py_None) {
        if (PyDict_DelItem(dict, state_key) < 0) PyErr_Clear();
    } else if (PyDict_SetItem(dict, state_key, st) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *fp_get_state(PyObject *self, PyObject *unused) {
    PyObject *dict = PyThreadState_GetDict();
    PyObject *st = dict ? PyDict_GetItemWithError(dict, state_key) : NULL;
    if (st == NULL) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    return Py_NewRef(st);
}

/* Write one row for the calling thread; `f` (a new reference or NULL) locates it. */
static PyObject *write_row(long long t, long long kind, long long res, long long arg,
                           PyFrameObject *f) {
    unsigned long long key = 0;
    if (f != NULL) {
        PyCodeObject *code = PyFrame_GetCode(f);
        int lasti = PyFrame_GetLasti(f);
        int ok = keep_code((PyObject *)code);
        key = ((unsigned long long)(uintptr_t)code << 16) | ((unsigned)lasti & 0xFFFFu);
        Py_DECREF(code);
        Py_DECREF(f);
        if (ok < 0) return NULL;
    }
    PyObject *st = current_state();
    if (st == NULL) return NULL;
    PyObject *buf = SLOT(st, off_buf), *used_o = SLOT(st, off_used), *end_o = SLOT(st, off_end);
    PyObject *unit_o = SLOT(st, off_unit);
    if (buf == NULL || used_o == NULL || end_o == NULL || unit_o == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "thread state not initialised");
        return NULL;
    }
    Py_ssize_t used = PyLong_AsSsize_t(used_o), end = PyLong_AsSsize_t(end_o);
    long long unit = PyLong_AsLongLong(unit_o);
    if (PyErr_Occurred()) return NULL;
    if (used + ROW > end || !PyByteArray_Check(buf) || PyByteArray_GET_SIZE(buf) < used + ROW) {
        return PyObject_CallFunction(overflow_cb, "OLLLLK", st, t, kind, res, arg, key);
    }
    long long row[6];
    row[0] = t; row[1] = kind; row[2] = unit; row[3] = res; row[4] = arg;
    memcpy(&row[5], &key, 8);
    memcpy(PyByteArray_AS_STRING(buf) + used, row, ROW); /* little-endian hosts only (checked at import) */
    PyObject *nu = PyLong_FromSsize_t(used + ROW);
    if (nu == NULL) return NULL;
    PyObject *old = SLOT(st, off_used);
    SLOT(st, off_used) = nu;
    Py_XDECREF(old);
    Py_RETURN_NONE;
}

/* 1 when the event must be skipped: the gate is on and the calling context is outside
 * every full-fidelity boundary; -1 on error. */
static inline int gated_out(long long kind) {
    if (gate_var == NULL || (kind >= 20 && kind < 30) || kind >= 40) return 0;
    PyObject *v = NULL;
    if (PyContextVar_Get(gate_var, Py_None, &v) < 0) return -1;
    int out = (v == NULL || v == Py_None);
    Py_XDECREF(v);
    return out;
}

static int parse3(PyObject *const *args, long long *kind, long long *res, long long *arg) {
    *kind = PyLong_AsLongLong(args[0]);
    *res = PyLong_AsLongLong(args[1]);
    *arg = PyLong_AsLongLong(args[2]);
    return PyErr_Occurred() ? -1 : 0;
}

/* record(kind, res, arg, depth): one event of the calling thread's current unit, located
 * at the frame `depth` levels above the Python function calling us (0: no location). */
static PyObject *fp_record(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) { PyErr_SetString(PyExc_TypeError, "record(kind, res, arg, depth)"); return NULL; }
    long long t = now_ns(), kind, res, arg;
    if (parse3(args, &kind, &res, &arg) < 0) return NULL;
    int out = gated_out(kind);
    if (out) { if (out < 0) return NULL; Py_RETURN_NONE; }
    long depth = PyLong_AsLong(args[3]);
    if (depth == -1 && PyErr_Occurred()) return NULL;
    PyFrameObject *f = NULL;
    if (depth > 0) {
        f = PyEval_GetFrame(); /* borrowed: the Python function calling us */
        Py_XINCREF(f);
        for (long i = 0; i < depth && f != NULL; i++) {
            PyFrameObject *back = PyFrame_GetBack(f);
            Py_DECREF(f);
            f = back;
        }
    }
    return write_row(t, kind, res, arg, f);
}

/* record_any(kind, res, arg, depth): like record, past the boundary gate (for the asyncio
 * hook's step brackets, written outside the task's context). */
static PyObject *fp_record_any(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    PyObject *saved = gate_var;
    gate_var = NULL;
    PyObject *r = fp_record(self, args, nargs);
    gate_var = saved;
    return r;
}

/* record_user(kind, res, arg): located at the nearest frame of the program itself,
 * skipping the standard library and the agent (classified once per code object). */
static PyObject *fp_record_user(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) { PyErr_SetString(PyExc_TypeError, "record_user(kind, res, arg)"); return NULL; }
    long long t = now_ns(), kind, res, arg;
    if (parse3(args, &kind, &res, &arg) < 0) return NULL;
    int out = gated_out(kind);
    if (out) { if (out < 0) return NULL; Py_RETURN_NONE; }
    PyFrameObject *f = PyEval_GetFrame();
    Py_XINCREF(f);
    while (f != NULL) {
        PyCodeObject *code = PyFrame_GetCode(f);
        int internal = is_internal((PyObject *)code);
        Py_DECREF(code);
        if (internal < 0) { Py_DECREF(f); return NULL; }
        if (!internal) break;
        PyFrameObject *back = PyFrame_GetBack(f);
        Py_DECREF(f);
        f = back;
    }
    return write_row(t, kind, res, arg, f);
}

/* columns(rows, locmap) -> (kind, unit, time, res, arg, loc, missing_keys) */
static PyObject *fp_columns(PyObject *self, PyObject *args) {
    Py_buffer view;
    PyObject *locmap;
    if (!PyArg_ParseTuple(args, "y*O!", &view, &PyDict_Type, &locmap)) return NULL;
    Py_ssize_t n = view.len / ROW;
    PyObject *kb = PyBytes_FromStringAndSize(NULL, n), *ub = PyBytes_FromStringAndSize(NULL, 4 * n);
    PyObject *tb = PyBytes_FromStringAndSize(NULL, 8 * n), *rb = PyBytes_FromStringAndSize(NULL, 4 * n);
    PyObject *ab = PyBytes_FromStringAndSize(NULL, 8 * n), *lb = PyBytes_FromStringAndSize(NULL, 4 * n);
    PyObject *missing = PySet_New(NULL);
    PyObject *result = NULL;
    if (!kb || !ub || !tb || !rb || !ab || !lb || !missing) goto done;
    unsigned char *k = (unsigned char *)PyBytes_AS_STRING(kb);
    char *u = PyBytes_AS_STRING(ub), *tt = PyBytes_AS_STRING(tb), *r = PyBytes_AS_STRING(rb);
    char *a = PyBytes_AS_STRING(ab), *l = PyBytes_AS_STRING(lb);
    const char *src = view.buf;
    unsigned long long last_key = 0;
    uint32_t last_loc = 0;
    int have_last = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        long long row[6];
        memcpy(row, src + i * ROW, ROW);
        unsigned long long key;
        memcpy(&key, &row[5], 8);
        uint32_t unit = (uint32_t)row[2], res = (uint32_t)row[3], loc = 0;
        k[i] = (unsigned char)row[1];
        memcpy(u + 4 * i, &unit, 4);
        memcpy(tt + 8 * i, &row[0], 8);
        memcpy(r + 4 * i, &res, 4);
        memcpy(a + 8 * i, &row[4], 8);
        if (key != 0) {
            if (have_last && key == last_key) {
                loc = last_loc;
            } else {
                /* Python sees the key as a signed 64-bit value (array 'q'), so use the same. */
                long long skey;
                memcpy(&skey, &key, 8);
                PyObject *ko = PyLong_FromLongLong(skey);
                if (ko == NULL) goto done;
                PyObject *v = PyDict_GetItemWithError(locmap, ko);
                if (v != NULL) {
                    loc = (uint32_t)PyLong_AsUnsignedLong(v);
                } else if (!PyErr_Occurred()) {
                    if (PySet_Add(missing, ko) < 0) { Py_DECREF(ko); goto done; }
                }
                Py_DECREF(ko);
                if (PyErr_Occurred()) goto done;
                last_key = key; last_loc = loc; have_last = 1;
            }
        }
        memcpy(l + 4 * i, &loc, 4);
    }
    result = PyTuple_Pack(7, kb, ub, tb, rb, ab, lb, missing);
done:
    PyBuffer_Release(&view);
    Py_XDECREF(kb); Py_XDECREF(ub); Py_XDECREF(tb); Py_XDECREF(rb);
    Py_XDECREF(ab); Py_XDECREF(lb); Py_XDECREF(missing);
    return result;
}

/* --- records: the string table and definition records of a chunk payload ------------- */

typedef struct { char *p; Py_ssize_t len, cap; } Buf;

static int buf_reserve(Buf *b, Py_ssize_t more) {
    if (b->len + more <= b->cap) return 0;
    Py_ssize_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more) cap *= 2;
    char *p = PyMem_Realloc(b->p, cap);
    if (p == NULL) { PyErr_NoMemory(); return -1; }
    b->p = p; b->cap = cap;
    return 0;
}

static int put_uv(Buf *b, unsigned long long v) {
    if (buf_reserve(b, 10) < 0) return -1;
    while (v >= 0x80) { b->p[b->len++] = (char)((v & 0x7F) | 0x80); v >>= 7; }
    b->p[b->len++] = (char)v;
    return 0;
}

static int put_bytes(Buf *b, const char *p, Py_ssize_t n) {
    if (buf_reserve(b, n) < 0) return -1;
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

/* Index of `s` in the chunk's string table, adding it (UTF-8, surrogatepass) if new. */
static Py_ssize_t string_ref(PyObject *index, Buf *table, Py_ssize_t *count, PyObject *s) {
    PyObject *v = PyDict_GetItemWithError(index, s);
    if (v != NULL) return PyLong_AsSsize_t(v);
    if (PyErr_Occurred()) return -1;
    PyObject *enc = PyUnicode_AsEncodedString(s, "utf-8", "surrogatepass");
    if (enc == NULL) return -1;
    int bad = put_uv(table, (unsigned long long)PyBytes_GET_SIZE(enc)) < 0 ||
              put_bytes(table, PyBytes_AS_STRING(enc), PyBytes_GET_SIZE(enc)) < 0;
    Py_DECREF(enc);
    if (bad) return -1;
    PyObject *i = PyLong_FromSsize_t(*count);
    if (i == NULL || PyDict_SetItem(index, s, i) < 0) { Py_XDECREF(i); return -1; }
    Py_DECREF(i);
    return (*count)++;
}

/* encode_records(records) -> (string table bytes, records bytes), exactly as
 * wtrace.payload.encode_payload writes them (that function is the reference). */
static PyObject *fp_encode_records(PyObject *self, PyObject *records) {
    PyObject *seq = PySequence_Fast(records, "records must be a sequence");
    if (seq == NULL) return NULL;
    PyObject *index = PyDict_New(), *result = NULL;
    Buf table = {0}, body = {0};
    Py_ssize_t count = 0, n = PySequence_Fast_GET_SIZE(seq);
    if (index == NULL || put_uv(&body, (unsigned long long)n) < 0) goto done;
    for (Py_ssize_t r = 0; r < n; r++) {
        PyObject *rec = PySequence_Fast_GET_ITEM(seq, r);
        PyObject *rtype = PyObject_GetAttrString(rec, "rtype");
        PyObject *rid = rtype ? PyObject_GetAttrString(rec, "id") : NULL;
        PyObject *attrs = rid ? PyObject_GetAttrString(rec, "attrs") : NULL;
        int ok = attrs != NULL && PyTuple_Check(attrs);
        long t = ok ? PyLong_AsLong(rtype) : -1;
        unsigned long long id = ok ? PyLong_AsUnsignedLongLong(rid) : 0;
        if (ok && !PyErr_Occurred() && t >= 0 && t <= 255 && buf_reserve(&body, 1) == 0) {
            body.p[body.len++] = (char)t;
            ok = put_uv(&body, id) == 0 && put_uv(&body, (unsigned long long)PyTuple_GET_SIZE(attrs)) == 0;
        } else {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "malformed record");
            ok = 0;
        }
        for (Py_ssize_t a = 0; ok && a < PyTuple_GET_SIZE(attrs); a++) {
            PyObject *kv = PyTuple_GET_ITEM(attrs, a);
            if (!PyTuple_Check(kv) || PyTuple_GET_SIZE(kv) != 2 || !PyUnicode_Check(PyTuple_GET_ITEM(kv, 0))) {
                PyErr_SetString(PyExc_TypeError, "an attribute must be a (str, value) pair");
                ok = 0; break;
            }
            PyObject *key = PyTuple_GET_ITEM(kv, 0), *val = PyTuple_GET_ITEM(kv, 1);
            Py_ssize_t ki = string_ref(index, &table, &count, key);
            if (ki < 0 || put_uv(&body, (unsigned long long)ki) < 0) { ok = 0; break; }
            if (PyBool_Check(val)) {
                PyErr_Format(PyExc_TypeError, "attribute %U: use 0/1, not a bool", key);
                ok = 0;
            } else if (PyLong_Check(val)) {
                int overflow = 0;
                long long x = PyLong_AsLongLongAndOverflow(val, &overflow);
                if (overflow) { PyErr_Format(PyExc_ValueError, "%S does not fit in 64 bits", val); ok = 0; break; }
                if (x == -1 && PyErr_Occurred()) { ok = 0; break; }
                unsigned long long z = ((unsigned long long)x << 1) ^ (unsigned long long)(x >> 63);
                ok = buf_reserve(&body, 1) == 0;
                if (ok) { body.p[body.len++] = 0; ok = put_uv(&body, z) == 0; }
            } else if (PyUnicode_Check(val)) {
                Py_ssize_t vi = string_ref(index, &table, &count, val);
                ok = vi >= 0 && buf_reserve(&body, 1) == 0;
                if (ok) { body.p[body.len++] = 1; ok = put_uv(&body, (unsigned long long)vi) == 0; }
            } else if (PyBytes_Check(val) || PyByteArray_Check(val)) {
                Py_buffer view;
                if (PyObject_GetBuffer(val, &view, PyBUF_SIMPLE) < 0) { ok = 0; break; }
                ok = buf_reserve(&body, 1) == 0;
                if (ok) {
                    body.p[body.len++] = 2;
                    ok = put_uv(&body, (unsigned long long)view.len) == 0 && put_bytes(&body, view.buf, view.len) == 0;
                }
                PyBuffer_Release(&view);
            } else {
                PyErr_Format(PyExc_TypeError, "attribute %U: unsupported value type %s", key, Py_TYPE(val)->tp_name);
                ok = 0;
            }
        }
        Py_XDECREF(rtype); Py_XDECREF(rid); Py_XDECREF(attrs);
        if (!ok) goto done;
    }
    {
        Buf head = {0};
        if (put_uv(&head, (unsigned long long)count) == 0 && put_bytes(&head, table.p ? table.p : "", table.len) == 0) {
            result = Py_BuildValue("(y#y#)", head.p, head.len, body.p, body.len);
        }
        PyMem_Free(head.p);
    }
done:
    PyMem_Free(table.p);
    PyMem_Free(body.p);
    Py_XDECREF(index);
    Py_DECREF(seq);
    return result;
}

static PyObject *fp_set_callbacks(PyObject *self, PyObject *args) {
    PyObject *cls, *adopt, *overflow, *reg, *classify;
    if (!PyArg_ParseTuple(args, "OOOOO", &cls, &adopt, &overflow, &reg, &classify)) return NULL;
    Py_ssize_t b = slot_offset(cls, "buf"), u = slot_offset(cls, "used");
    Py_ssize_t e = slot_offset(cls, "end"), n = slot_offset(cls, "unit");
    if (b < 0 || u < 0 || e < 0 || n < 0) return NULL;
    off_buf = b; off_used = u; off_end = e; off_unit = n;
    Py_XSETREF(adopt_cb, Py_NewRef(adopt));
    Py_XSETREF(overflow_cb, Py_NewRef(overflow));
    Py_XSETREF(register_code_cb, Py_NewRef(reg));
    Py_XSETREF(classify_cb, Py_NewRef(classify));
    Py_RETURN_NONE;
}

/* set_gate(var or None): turn the boundary gate on (a ContextVar) or off. */
static PyObject *fp_set_gate(PyObject *self, PyObject *var) {
    if (var == Py_None) {
        Py_CLEAR(gate_var);
        Py_RETURN_NONE;
    }
    if (!PyContextVar_CheckExact(var)) {
        PyErr_SetString(PyExc_TypeError, "set_gate expects a ContextVar or None");
        return NULL;
    }
    Py_XSETREF(gate_var, Py_NewRef(var));
    Py_RETURN_NONE;
}

/* --- SIGTERM reaches a thread that always runs the handler ------------------------------
 *
 * Python runs a signal's handler on the main thread only, when that thread next runs
 * bytecode. The kernel may hand a process-wide SIGTERM to any thread that does not block
 * it (a program thread, a C library's thread the agent cannot mask); CPython's C handler
 * then only sets a flag, and a main thread blocked in an untimed wait (Event.wait(),
 * join(), a lock) never wakes to run the agent's handler: the process that SIGTERM's
 * default action would have killed lives on.
 *
 * Sending the signal on to the main thread (pthread_kill) is not enough, and neither is
 * the signal landing there first: CPython's wait is "drop the GIL, then sem_wait", and a
 * signal taken between the two (seen: the main thread queued on the GIL's mutex inside
 * drop_gil) only sets the flag; sem_wait then sleeps for good with the handler pending.
 * No signal to one thread can close that window, nor wake a main thread inside a C
 * library's wait that retries on EINTR (sqlite's busy handler). So term_take, in place of
 * CPython's handler, posts a semaphore (async-signal-safe) on whichever thread the kernel
 * chose, and one of the agent's threads, waiting on it in wait_sigterm() without the GIL,
 * runs the agent's handler; the main thread need not wake at all.
 *
 * Async-signal-safe: sem_post only; errno is kept. The handler keeps the mask and flags
 * CPython chose. Setting SIGTERM's action again (signal.signal, or libc's signal(SIGTERM,
 * SIG_DFL) on the agent's way to dying of it) replaces this handler, and nothing is left
 * behind but a waiting thread.
 */

/* One post per SIGTERM term_take took, not yet handed out by wait_sigterm(). Initialised
 * before term_take is installed; a forked child starts again from zero (term_after_fork:
 * what the parent took was the parent's, and no thread waits on it in the child yet). */
static sem_t term_sem;
static int term_ready;

static void term_after_fork(void) {
    if (term_ready) sem_init(&term_sem, 0, 0);
}

static void term_take(int sig, siginfo_t *info, void *uctx) {
    int saved = errno;
    (void)sig;
    (void)info;
    (void)uctx;
    sem_post(&term_sem);
    errno = saved;
}

/* forward_sigterm() -> bool: put term_take in place of the SIGTERM handler CPython set (call
 * it on the main thread, after signal.signal, with a thread waiting in wait_sigterm()).
 * False, and nothing changed, when SIGTERM's action is not a handler; True when it now is
 * term_take (already or now). */
static PyObject *fp_forward_sigterm(PyObject *self, PyObject *unused) {
    struct sigaction cur, next;
    if (sigaction(SIGTERM, NULL, &cur) != 0) return PyErr_SetFromErrno(PyExc_OSError);
    if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == term_take) Py_RETURN_TRUE;
    if (!(cur.sa_flags & SA_SIGINFO) && (cur.sa_handler == SIG_DFL || cur.sa_handler == SIG_IGN))
        Py_RETURN_FALSE;
    if (!term_ready) {
        if (sem_init(&term_sem, 0, 0) != 0) return PyErr_SetFromErrno(PyExc_OSError);
        int err = pthread_atfork(NULL, NULL, term_after_fork);
        if (err != 0) {
            errno = err;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        term_ready = 1;
    }
    next = cur;
    next.sa_flags = cur.sa_flags | SA_SIGINFO;
    next.sa_sigaction = term_take;
    if (sigaction(SIGTERM, &next, NULL) != 0) return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_TRUE;
}

/* wait_sigterm() -> int: block, without the GIL, until term_take has taken a SIGTERM not
 * handed out yet; returns SIGTERM. Each SIGTERM taken is handed out once. OSError when
 * forward_sigterm() never set the semaphore up. */
static PyObject *fp_wait_sigterm(PyObject *self, PyObject *unused) {
    int rc, err = 0;
    if (!term_ready) {
        errno = EINVAL;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_BEGIN_ALLOW_THREADS
    /* a signal the waiting thread takes itself only interrupts the wait */
    do {
        rc = sem_wait(&term_sem);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) err = errno;
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong(SIGTERM);
}

/* sigterm_forwarded() -> bool: is term_take SIGTERM's handler now? (for tests) */
static PyObject *fp_sigterm_forwarded(PyObject *self, PyObject *unused) {
    struct sigaction cur;
    if (sigaction(SIGTERM, NULL, &cur) != 0) return PyErr_SetFromErrno(PyExc_OSError);
    return PyBool_FromLong((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == term_take);
}

static PyMethodDef methods[] = {
    {"record", (PyCFunction)(void (*)(void))fp_record, METH_FASTCALL,
     "record(kind, res, arg, depth): write one event of the calling thread's unit."},
    {"record_any", (PyCFunction)(void (*)(void))fp_record_any, METH_FASTCALL,
     "record_any(kind, res, arg, depth): record, whatever the boundary gate says."},
    {"record_user", (PyCFunction)(void (*)(void))fp_record_user, METH_FASTCALL,
     "record_user(kind, res, arg): write one event located at the program's own frame."},
    {"columns", fp_columns, METH_VARARGS,
     "columns(rows, locmap) -> (kind, unit, time, res, arg, loc, missing keys)."},
    {"set_callbacks", fp_set_callbacks, METH_VARARGS,
     "set_callbacks(ThreadState, adopt, overflow, register_code, classify)."},
    {"encode_records", fp_encode_records, METH_O,
     "encode_records(records) -> (string table, records): a payload's first two parts."},
    {"set_state", fp_set_state, METH_O, "set_state(st): the calling thread's ThreadState."},
    {"get_state", fp_get_state, METH_NOARGS, "get_state() -> ThreadState or None."},
    {"set_gate", fp_set_gate, METH_O,
     "set_gate(var): record concurrency events only while the ContextVar is not None."},
    {"forward_sigterm", fp_forward_sigterm, METH_NOARGS,
     "forward_sigterm() -> bool: hand every SIGTERM, on any thread, to wait_sigterm()."},
    {"wait_sigterm", fp_wait_sigterm, METH_NOARGS,
     "wait_sigterm() -> int: block (GIL released) until a SIGTERM was taken; SIGTERM."},
    {"sigterm_forwarded", fp_sigterm_forwarded, METH_NOARGS,
     "sigterm_forwarded() -> bool: is the forwarding handler SIGTERM's action now?"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native", "Optional C helpers of Willowisp (agent hot path, record encoding).", -1, methods,
};

PyMODINIT_FUNC PyInit__native(void) {
    const unsigned int probe = 1;
    if (*(const unsigned char *)&probe != 1) {
        PyErr_SetString(PyExc_ImportError, "the fast path assumes a little-endian host");
        return NULL;
    }
    state_key = PyUnicode_InternFromString("willowisp.thread_state");
    if (state_key == NULL) return NULL;
    return PyModule_Create(&module);
}
