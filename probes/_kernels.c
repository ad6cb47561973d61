/*
 * One-pass audio block statistics for probes/audio.py.
 *
 * frame_stats(samples, channels, head, frame_len, sums, totals)
 *
 *   samples    C-contiguous float32 or float64 buffer of interleaved frames
 *              (n frames x channels; any shape whose size is n * channels)
 *   head       frames in the leading segment (0 <= head <= n)
 *   frame_len  frames per whole frame (>= 1)
 *   sums       writable float64 buffer of (m + 2) * channels, m = (n - head) / frame_len:
 *              row 0 = per-channel sum of squares of the head, rows 1..m = of each whole
 *              frame, row m + 1 = of the tail (the remainder)
 *   totals     writable float64 buffer of 2 x channels: row 0 = per-channel sum of squares
 *              of the whole block, row 1 = per-channel peak power max x^2 (exact: the
 *              square of a float32 peak is exact in float64)
 *
 * numpy needs a pass over the samples per quantity (and strided passes to split the
 * channels); this reads each sample once. The inner loop keeps LANES independent
 * accumulators (lane k holds channel k % channels when channels divides LANES), so the
 * compiler can vectorise it without reassociating any floating-point sum: the result is
 * the same at every optimisation level. Float32 lanes are flushed into float64 every
 * CHUNK elements, which bounds the rounding error to about CHUNK / LANES terms
 * (relative error < 3e-5, i.e. < 0.0002 dB).
 *
 * A NaN sample makes its segment's sum NaN and is ignored by the peak (the wire decoder
 * only produces finite samples).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define VECTORS 4  /* independent vector accumulators per quantity */
#define CHUNK 8192 /* elements per float64 flush; a multiple of every lane count */

/* GCC/Clang vector extensions: portable SIMD (SSE2 on x86-64, NEON on arm64) with no
 * dependence on the optimiser's auto-vectorisation choices. */
typedef float f32v __attribute__((vector_size(16)));
typedef int32_t i32v __attribute__((vector_size(16)));
typedef double f64v __attribute__((vector_size(16)));
typedef int64_t i64v __attribute__((vector_size(16)));

/* max(a, b) lane by lane, b where a is NaN: one MAXPS/MAXPD on x86-64 (SSE2 is part of
 * its baseline), a compare and select elsewhere (ANBO_PORTABLE_SIMD forces the latter:
 * tests/probes/test_kernels.py builds it to check it against the SSE2 build). */
#if defined(__SSE2__) && !defined(ANBO_PORTABLE_SIMD)
#include <emmintrin.h>
static inline f32v vmax_f32(f32v a, f32v b) { return (f32v)_mm_max_ps((__m128)a, (__m128)b); }
static inline f64v vmax_f64(f64v a, f64v b) { return (f64v)_mm_max_pd((__m128d)a, (__m128d)b); }
#else
static inline f32v vmax_f32(f32v a, f32v b) {
    i32v gt = a > b;
    return (f32v)(((i32v)a & gt) | ((i32v)b & ~gt));
}
static inline f64v vmax_f64(f64v a, f64v b) {
    i64v gt = a > b;
    return (f64v)(((i64v)a & gt) | ((i64v)b & ~gt));
}
#endif

/* Add segment x (elems samples, frame-aligned) to sums[0..c) and its max |x| to peak[0..c). */
#define DEFINE_SEGMENT(NAME, T, I, FV, IV, VMAX, ABSMASK)                                  \
    static void NAME(const T *x, Py_ssize_t elems, int c, double *sums, double *peak) {  \
        enum { W = sizeof(FV) / sizeof(T), LANES = W * VECTORS };                        \
        if (LANES % c != 0) {                                                            \
            for (Py_ssize_t i = 0; i < elems; i += c) {                                  \
                for (int k = 0; k < c; k++) {                                            \
                    double a = fabs((double)x[i + k]);                                   \
                    sums[k] += a * a;                                                    \
                    peak[k] = a > peak[k] ? a : peak[k];                                 \
                }                                                                        \
            }                                                                            \
            return;                                                                      \
        }                                                                                \
        const IV mask = (IV){0} + (I)(ABSMASK);                                          \
        FV p[VECTORS];                                                                   \
        for (int j = 0; j < VECTORS; j++) p[j] = (FV){0};                                \
        Py_ssize_t i = 0;                                                                \
        while (i < elems) {                                                              \
            Py_ssize_t end = elems - i > CHUNK ? i + CHUNK : elems;                      \
            FV s[VECTORS];                                                               \
            for (int j = 0; j < VECTORS; j++) s[j] = (FV){0};                            \
            for (; i + LANES <= end; i += LANES) {                                       \
                for (int j = 0; j < VECTORS; j++) {                                      \
                    FV v;                                                                \
                    memcpy(&v, x + i + j * W, sizeof v);                                 \
                    s[j] += v * v;                                                       \
                    p[j] = VMAX((FV)((IV)v & mask), p[j]);                               \
                }                                                                        \
            }                                                                            \
            /* the last < LANES elements; i is a multiple of LANES, hence of c */        \
            for (int k = 0; i < end; i++, k++) {                                         \
                T a = x[i] < 0 ? -x[i] : x[i];                                           \
                s[k / W][k % W] += a * a;                                                \
                if (a > p[k / W][k % W]) p[k / W][k % W] = a;                            \
            }                                                                            \
            for (int k = 0; k < LANES; k++) sums[k % c] += (double)s[k / W][k % W];      \
        }                                                                                \
        for (int k = 0; k < LANES; k++) {                                                \
            double a = (double)p[k / W][k % W];                                          \
            peak[k % c] = a > peak[k % c] ? a : peak[k % c];                             \
        }                                                                                \
    }

DEFINE_SEGMENT(segment_f32, float, int32_t, f32v, i32v, vmax_f32, 0x7FFFFFFF)
DEFINE_SEGMENT(segment_f64, double, int64_t, f64v, i64v, vmax_f64, 0x7FFFFFFFFFFFFFFF)


static int get_buffer(PyObject *obj, Py_buffer *view, int writable, const char *what) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyErr_Format(PyExc_TypeError, "frame_stats: %s must be a C-contiguous%s buffer", what,
                     writable ? " writable" : "");
        return -1;
    }
    return 0;
}

static int is_format(const Py_buffer *view, char code, Py_ssize_t itemsize) {
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    return f[0] == code && f[1] == '\0' && view->itemsize == itemsize;
}

static PyObject *frame_stats(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "frame_stats(samples, channels, head, frame_len, sums, totals)");
        return NULL;
    }
    Py_ssize_t c = PyLong_AsSsize_t(args[1]);
    Py_ssize_t head = PyLong_AsSsize_t(args[2]);
    Py_ssize_t fl = PyLong_AsSsize_t(args[3]);
    if (PyErr_Occurred()) return NULL;
    if (c < 1 || c > 1024 || head < 0 || fl < 1) {
        PyErr_Format(PyExc_ValueError,
                     "frame_stats: need 1 <= channels <= 1024, head >= 0, frame_len >= 1 "
                     "(got %zd, %zd, %zd)", c, head, fl);
        return NULL;
    }
    Py_buffer src, sums, totals;
    if (get_buffer(args[0], &src, 0, "samples") < 0) return NULL;
    if (get_buffer(args[4], &sums, 1, "sums") < 0) {
        PyBuffer_Release(&src);
        return NULL;
    }
    if (get_buffer(args[5], &totals, 1, "totals") < 0) {
        PyBuffer_Release(&sums);
        PyBuffer_Release(&src);
        return NULL;
    }
    PyObject *result = NULL;
    int f32 = is_format(&src, 'f', 4);
    Py_ssize_t items = src.itemsize > 0 ? src.len / src.itemsize : 0;
    Py_ssize_t n = items / c;
    Py_ssize_t m = head <= n ? (n - head) / fl : 0;
    if (!f32 && !is_format(&src, 'd', 8)) {
        PyErr_SetString(PyExc_TypeError, "frame_stats: samples must be float32 or float64");
    } else if (!is_format(&sums, 'd', 8) || !is_format(&totals, 'd', 8)) {
        PyErr_SetString(PyExc_TypeError, "frame_stats: sums and totals must be float64");
    } else if (items % c != 0 || head > n) {
        PyErr_Format(PyExc_ValueError,
                     "frame_stats: %zd samples are not whole frames of %zd channels with a "
                     "head of %zd frames", items, c, head);
    } else if (sums.len != (m + 2) * c * 8 || totals.len != 2 * c * 8) {
        PyErr_Format(PyExc_ValueError,
                     "frame_stats: sums must hold (%zd + 2) x %zd and totals 2 x %zd values", m, c, c);
    } else {
        double *out = (double *)sums.buf;
        double *tot = (double *)totals.buf;
        double *pk = tot + c; /* max |x| until the end, then squared */
        memset(out, 0, (size_t)sums.len);
        memset(tot, 0, (size_t)totals.len);
        /* Let other threads run meanwhile, unless the block is too small to pay for it. */
        PyThreadState *ts = items >= 65536 ? PyEval_SaveThread() : NULL;
        /* segment s covers frames [start(s), start(s + 1)) */
        for (Py_ssize_t s = 0; s < m + 2; s++) {
            Py_ssize_t a = s == 0 ? 0 : head + (s - 1) * fl;
            Py_ssize_t b = s == 0 ? head : (s <= m ? head + s * fl : n);
            if (f32)
                segment_f32((const float *)src.buf + a * c, (b - a) * c, (int)c, out + s * c, pk);
            else
                segment_f64((const double *)src.buf + a * c, (b - a) * c, (int)c, out + s * c, pk);
        }
        for (Py_ssize_t s = 0; s < m + 2; s++)
            for (Py_ssize_t k = 0; k < c; k++) tot[k] += out[s * c + k];
        for (Py_ssize_t k = 0; k < c; k++) pk[k] *= pk[k];
        if (ts != NULL) PyEval_RestoreThread(ts);
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&totals);
    PyBuffer_Release(&sums);
    PyBuffer_Release(&src);
    return result;
}

static PyMethodDef methods[] = {
    {"frame_stats", (PyCFunction)(void (*)(void))frame_stats, METH_FASTCALL,
     "frame_stats(samples, channels, head, frame_len, sums, totals) -> None\n\n"
     "Per-segment and whole-block per-channel sums of squares, and per-channel peak "
     "power, in one pass; "
     "see probes/_kernels.c."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "probes._kernels",
    "One-pass audio block statistics (compiled).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
