/*
 * One-pass audio block statistics for probes/audio.py.
 *
 * frame_stats(samples, channels, head, frame_len, sums, totals[, floor_power])
 *
 *   samples    C-contiguous float32, float64 or int16 buffer of interleaved frames
 *              (n frames x channels; any shape whose size is n * channels). int16 is
 *              read in either byte order (numpy '<i2' or '>i2', e.g. the wire's L16
 *              payload through np.frombuffer, with no copy) and taken as full scale
 *              32768: the results are those of x / 32768, with no float32 copy made
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

/* int16 samples: each 16-byte load of 8 codes is byte-swapped if needed, widened to
 * int32 and converted to float32 in registers, then accumulated exactly like float32
 * samples (x^2 of an int16 code has at most 30 significant bits: one float32 rounding,
 * as for float32 input). Sums and peaks are scaled to full scale 1.0 (exact powers of
 * two) when the float32 lanes are flushed. */
typedef int16_t i16v __attribute__((vector_size(16)));
typedef uint16_t u16v __attribute__((vector_size(16)));
typedef int32_t i32x8 __attribute__((vector_size(32)));
typedef float f32x8 __attribute__((vector_size(32)));

static inline int16_t swap16(int16_t v, int swap) {
    uint16_t u = (uint16_t)v;
    return swap ? (int16_t)(uint16_t)((u << 8) | (u >> 8)) : v;
}

/* Per 8 int16 codes: load (byte-swapped if swap), keep the lane-wise max and min codes
 * (exact, in int16: the peak), and widen to two float32 vectors of code * 2^16 (the code
 * in an int32's upper half: SSE2 has no sign-extending widen, this costs one unpack; the
 * 2^16 is exact and taken out with the scale) for the sums of squares. */
#if defined(__SSE2__) && !defined(ANBO_PORTABLE_SIMD)
static inline __attribute__((always_inline)) i16v load_i16(const int16_t *x, int swap) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)x);
    if (swap) v = _mm_or_si128(_mm_slli_epi16(v, 8), _mm_srli_epi16(v, 8));
    return (i16v)v;
}
static inline i16v vmax_i16(i16v a, i16v b) { return (i16v)_mm_max_epi16((__m128i)a, (__m128i)b); }
static inline i16v vmin_i16(i16v a, i16v b) { return (i16v)_mm_min_epi16((__m128i)a, (__m128i)b); }
static inline __attribute__((always_inline)) void widen_i16(i16v v, f32v out[2]) {
    __m128i zero = _mm_setzero_si128();
    out[0] = (f32v)_mm_cvtepi32_ps(_mm_unpacklo_epi16(zero, (__m128i)v));
    out[1] = (f32v)_mm_cvtepi32_ps(_mm_unpackhi_epi16(zero, (__m128i)v));
}
#else
static inline __attribute__((always_inline)) i16v load_i16(const int16_t *x, int swap) {
    i16v v;
    memcpy(&v, x, sizeof v);
    if (swap) {
        u16v u = (u16v)v;
        v = (i16v)((u << 8) | (u >> 8));
    }
    return v;
}
static inline i16v vmax_i16(i16v a, i16v b) {
    i16v gt = a > b;
    return (a & gt) | (b & ~gt);
}
static inline i16v vmin_i16(i16v a, i16v b) {
    i16v lt = a < b;
    return (a & lt) | (b & ~lt);
}
static inline __attribute__((always_inline)) void widen_i16(i16v v, f32v out[2]) {
    f32x8 f = __builtin_convertvector(__builtin_convertvector(v, i32x8), f32x8) * 65536.0f;
    memcpy(&out[0], &f, sizeof out[0]);
    memcpy(&out[1], (const char *)&f + sizeof out[0], sizeof out[1]);
}
#endif

static inline __attribute__((always_inline)) void segment_i16_impl(const int16_t *x, Py_ssize_t elems,
                                                                   int c, double *sums, double *peak,
                                                                   int swap) {
    enum { W = 4, LANES = W * VECTORS }; /* 16 lanes: two loads of 8 codes */
    const double S = 0x1p-15;
    if (LANES % c != 0) {
        for (Py_ssize_t i = 0; i < elems; i += c) {
            for (int k = 0; k < c; k++) {
                double a = fabs((double)swap16(x[i + k], swap)) * S;
                sums[k] += a * a;
                peak[k] = a > peak[k] ? a : peak[k];
            }
        }
        return;
    }
    i16v hi[2] = {{0}, {0}}, lo[2] = {{0}, {0}};
    Py_ssize_t i = 0;
    while (i < elems) {
        Py_ssize_t end = elems - i > CHUNK ? i + CHUNK : elems;
        f32v s[VECTORS];
        for (int j = 0; j < VECTORS; j++) s[j] = (f32v){0};
        for (; i + LANES <= end; i += LANES) {
            for (int h = 0; h < 2; h++) {
                i16v v = load_i16(x + i + h * 8, swap);
                hi[h] = vmax_i16(hi[h], v);
                lo[h] = vmin_i16(lo[h], v);
                f32v w[2];
                widen_i16(v, w);
                s[2 * h] += w[0] * w[0];
                s[2 * h + 1] += w[1] * w[1];
            }
        }
        /* the last < LANES elements; i is a multiple of LANES, hence of c */
        for (int k = 0; i < end; i++, k++) {
            int16_t v = swap16(x[i], swap);
            float a = (float)v * 65536.0f;
            s[k / W][k % W] += a * a;
            if (v > hi[k / 8][k % 8]) hi[k / 8][k % 8] = v;
            if (v < lo[k / 8][k % 8]) lo[k / 8][k % 8] = v;
        }
        for (int k = 0; k < LANES; k++) sums[k % c] += (double)s[k / W][k % W] * 0x1p-62;
    }
    for (int k = 0; k < LANES; k++) {
        int m = hi[k / 8][k % 8] > -lo[k / 8][k % 8] ? hi[k / 8][k % 8] : -lo[k / 8][k % 8];
        double a = (double)m * S;
        peak[k % c] = a > peak[k % c] ? a : peak[k % c];
    }
}

static void segment_i16(const int16_t *x, Py_ssize_t elems, int c, double *sums, double *peak) {
    segment_i16_impl(x, elems, c, sums, peak, 0);
}
static void segment_i16_swapped(const int16_t *x, Py_ssize_t elems, int c, double *sums, double *peak) {
    segment_i16_impl(x, elems, c, sums, peak, 1);
}


static int get_buffer(PyObject *obj, Py_buffer *view, int writable, const char *what) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyErr_Format(PyExc_TypeError, "frame_stats: %s must be a C-contiguous%s buffer", what,
                     writable ? " writable" : "");
        return -1;
    }
    return 0;
}

static int host_is_little(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* 1 if the buffer holds items of `code` in the host's byte order, 2 in the other order
 * (only asked for int16), 0 if not of that type. */
static int is_format(const Py_buffer *view, char code, Py_ssize_t itemsize) {
    const char *f = view->format ? view->format : "B";
    int order = 1;
    if (*f == '<' || *f == '>' || *f == '!') {
        int little = *f == '<';
        order = little == host_is_little() ? 1 : 2;
        f++;
    } else if (*f == '=' || *f == '@') {
        f++;
    }
    if (!(f[0] == code && f[1] == '\0' && view->itemsize == itemsize)) return 0;
    return order;
}

static PyObject *frame_stats(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 6 && nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "frame_stats(samples, channels, head, frame_len, sums, totals[, floor_power])");
        return NULL;
    }
    double floor_power = -1.0; /* < 0: totals stay sums and peak powers */
    if (nargs == 7) {
        floor_power = PyFloat_AsDouble(args[6]);
        if (floor_power == -1.0 && PyErr_Occurred()) return NULL;
        if (!(floor_power > 0.0)) {
            PyErr_SetString(PyExc_ValueError, "frame_stats: floor_power must be > 0");
            return NULL;
        }
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
    int f32 = is_format(&src, 'f', 4) == 1;
    int f64 = is_format(&src, 'd', 8) == 1;
    int i16 = is_format(&src, 'h', 2); /* 1 host order, 2 swapped */
    Py_ssize_t items = src.itemsize > 0 ? src.len / src.itemsize : 0;
    Py_ssize_t n = items / c;
    Py_ssize_t m = head <= n ? (n - head) / fl : 0;
    if (!f32 && !f64 && !i16) {
        PyErr_SetString(PyExc_TypeError,
                        "frame_stats: samples must be float32 or float64 (native byte order) or int16");
    } else if (is_format(&sums, 'd', 8) != 1 || is_format(&totals, 'd', 8) != 1) {
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
            else if (i16 == 1)
                segment_i16((const int16_t *)src.buf + a * c, (b - a) * c, (int)c, out + s * c, pk);
            else if (i16 == 2)
                segment_i16_swapped((const int16_t *)src.buf + a * c, (b - a) * c, (int)c, out + s * c, pk);
            else
                segment_f64((const double *)src.buf + a * c, (b - a) * c, (int)c, out + s * c, pk);
        }
        for (Py_ssize_t s = 0; s < m + 2; s++)
            for (Py_ssize_t k = 0; k < c; k++) tot[k] += out[s * c + k];
        for (Py_ssize_t k = 0; k < c; k++) pk[k] *= pk[k];
        if (floor_power > 0.0) {
            for (Py_ssize_t k = 0; k < c; k++) {
                double rms = n > 0 ? tot[k] / (double)n : 0.0;
                /* the comparisons are written so that a NaN sum stays NaN, as in numpy */
                tot[k] = 10.0 * log10(rms < floor_power ? floor_power : rms);
                pk[k] = 10.0 * log10(pk[k] < floor_power ? floor_power : pk[k]);
            }
        }
        if (ts != NULL) PyEval_RestoreThread(ts);
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&totals);
    PyBuffer_Release(&sums);
    PyBuffer_Release(&src);
    return result;
}

/*
 * sos_power(samples, sos, zi, weights, power)
 *
 *   samples  C-contiguous float32 or float64 (n frames x c channels, interleaved)
 *   sos      float64 (k, 6) second-order sections [b0 b1 b2 a0 a1 a2], a0 = 1 (scipy's
 *            layout), 1 <= k <= SOS_MAX
 *   zi       writable float64 (k, c, 2): each section's state per channel, updated in place
 *            (scipy.signal.sosfilt's zi layout for a (c, n) input filtered along time)
 *   weights  float64 (c,)
 *   power    writable float64 (n,): sum over channels of weight * y^2, y the filtered sample
 *
 * BS.1770's K-weighting and channel sum in one pass over the interleaved block: scipy's
 * sosfilt needs a float64, time-contiguous copy per channel, then numpy a pass to square
 * and one to weight and sum. Same recurrence and order of operations as sosfilt's (direct
 * form II transposed, float64), so the same results.
 */
#define SOS_MAX 4
#define SOS_CHANNELS 64

#define DEFINE_SOS(NAME, T)                                                                 \
    static void NAME(const T *x, Py_ssize_t n, int c, int k, const double *sos, double *zi,  \
                     const double *w, double *power) {                                     \
        double z[SOS_MAX][SOS_CHANNELS][2];                                                \
        for (int s = 0; s < k; s++)                                                        \
            for (int ch = 0; ch < c; ch++) {                                               \
                z[s][ch][0] = zi[(s * c + ch) * 2];                                        \
                z[s][ch][1] = zi[(s * c + ch) * 2 + 1];                                    \
            }                                                                              \
        for (Py_ssize_t i = 0; i < n; i++) {                                               \
            double acc = 0.0;                                                              \
            for (int ch = 0; ch < c; ch++) {                                               \
                double v = (double)x[i * c + ch];                                          \
                for (int s = 0; s < k; s++) {                                              \
                    const double *q = sos + 6 * s;                                         \
                    double y = q[0] * v + z[s][ch][0];                                     \
                    z[s][ch][0] = q[1] * v - q[4] * y + z[s][ch][1];                       \
                    z[s][ch][1] = q[2] * v - q[5] * y;                                     \
                    v = y;                                                                 \
                }                                                                          \
                acc += w[ch] * (v * v);                                                    \
            }                                                                              \
            power[i] = acc;                                                                \
        }                                                                                  \
        for (int s = 0; s < k; s++)                                                        \
            for (int ch = 0; ch < c; ch++) {                                               \
                zi[(s * c + ch) * 2] = z[s][ch][0];                                        \
                zi[(s * c + ch) * 2 + 1] = z[s][ch][1];                                    \
            }                                                                              \
    }

DEFINE_SOS(sos_f32, float)
DEFINE_SOS(sos_f64, double)

/* The common case, two sections (K-weighting) on one or two channels, with every state
 * in a local (the general loop keeps them in an array, and the store-to-load latency
 * lands on the recurrence's critical path). The same operations in the same order. */
#define DEFINE_SOS2(NAME, T, C)                                                           \
    static void NAME(const T *x, Py_ssize_t n, const double *q, double *zi, const double *w, \
                     double *power) {                                                     \
        const double b00 = q[0], b01 = q[1], b02 = q[2], a01 = q[4], a02 = q[5];          \
        const double b10 = q[6], b11 = q[7], b12 = q[8], a11 = q[10], a12 = q[11];        \
        double z[2][C][2];                                                                \
        for (int s = 0; s < 2; s++)                                                       \
            for (int ch = 0; ch < C; ch++) {                                              \
                z[s][ch][0] = zi[(s * C + ch) * 2];                                       \
                z[s][ch][1] = zi[(s * C + ch) * 2 + 1];                                   \
            }                                                                             \
        for (Py_ssize_t i = 0; i < n; i++) {                                              \
            double acc = 0.0;                                                             \
            for (int ch = 0; ch < C; ch++) {                                              \
                double v = (double)x[i * C + ch];                                         \
                double y = b00 * v + z[0][ch][0];                                         \
                z[0][ch][0] = b01 * v - a01 * y + z[0][ch][1];                            \
                z[0][ch][1] = b02 * v - a02 * y;                                          \
                v = y;                                                                    \
                y = b10 * v + z[1][ch][0];                                                \
                z[1][ch][0] = b11 * v - a11 * y + z[1][ch][1];                            \
                z[1][ch][1] = b12 * v - a12 * y;                                          \
                acc += w[ch] * (y * y);                                                   \
            }                                                                             \
            power[i] = acc;                                                               \
        }                                                                                 \
        for (int s = 0; s < 2; s++)                                                       \
            for (int ch = 0; ch < C; ch++) {                                              \
                zi[(s * C + ch) * 2] = z[s][ch][0];                                       \
                zi[(s * C + ch) * 2 + 1] = z[s][ch][1];                                   \
            }                                                                             \
    }

DEFINE_SOS2(sos2_f32_1, float, 1)
DEFINE_SOS2(sos2_f32_2, float, 2)
DEFINE_SOS2(sos2_f64_1, double, 1)
DEFINE_SOS2(sos2_f64_2, double, 2)

static PyObject *sos_power(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "sos_power(samples, sos, zi, weights, power)");
        return NULL;
    }
    Py_buffer src, sos, zi, w, out;
    PyObject *result = NULL;
    if (get_buffer(args[0], &src, 0, "samples") < 0) return NULL;
    if (get_buffer(args[1], &sos, 0, "sos") < 0) goto release0;
    if (get_buffer(args[2], &zi, 1, "zi") < 0) goto release1;
    if (get_buffer(args[3], &w, 0, "weights") < 0) goto release2;
    if (get_buffer(args[4], &out, 1, "power") < 0) goto release3;
    int f32 = is_format(&src, 'f', 4) == 1, f64 = is_format(&src, 'd', 8) == 1;
    Py_ssize_t c = w.len / 8, k = sos.len / 48, n = out.len / 8;
    if (!f32 && !f64) {
        PyErr_SetString(PyExc_TypeError, "sos_power: samples must be float32 or float64 (native order)");
    } else if (is_format(&sos, 'd', 8) != 1 || is_format(&zi, 'd', 8) != 1 || is_format(&w, 'd', 8) != 1 ||
               is_format(&out, 'd', 8) != 1) {
        PyErr_SetString(PyExc_TypeError, "sos_power: sos, zi, weights and power must be float64");
    } else if (c < 1 || c > SOS_CHANNELS || k < 1 || k > SOS_MAX || sos.len != k * 48 ||
               zi.len != k * c * 16 || src.len != n * c * src.itemsize) {
        PyErr_Format(PyExc_ValueError,
                     "sos_power: need 1..%d channels, 1..%d sections, zi of (sections, channels, 2) and "
                     "power of one value per frame", SOS_CHANNELS, SOS_MAX);
    } else {
        PyThreadState *ts = n * c >= 65536 ? PyEval_SaveThread() : NULL;
        const double *q = (const double *)sos.buf;
        double *z = (double *)zi.buf;
        const double *wt = (const double *)w.buf;
        double *pw = (double *)out.buf;
        if (k == 2 && c <= 2 && f32)
            (c == 1 ? sos2_f32_1 : sos2_f32_2)((const float *)src.buf, n, q, z, wt, pw);
        else if (k == 2 && c <= 2)
            (c == 1 ? sos2_f64_1 : sos2_f64_2)((const double *)src.buf, n, q, z, wt, pw);
        else if (f32)
            sos_f32((const float *)src.buf, n, (int)c, (int)k, (const double *)sos.buf, (double *)zi.buf,
                    (const double *)w.buf, (double *)out.buf);
        else
            sos_f64((const double *)src.buf, n, (int)c, (int)k, (const double *)sos.buf, (double *)zi.buf,
                    (const double *)w.buf, (double *)out.buf);
        if (ts != NULL) PyEval_RestoreThread(ts);
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&out);
release3:
    PyBuffer_Release(&w);
release2:
    PyBuffer_Release(&zi);
release1:
    PyBuffer_Release(&sos);
release0:
    PyBuffer_Release(&src);
    return result;
}

static PyMethodDef methods[] = {
    {"frame_stats", (PyCFunction)(void (*)(void))frame_stats, METH_FASTCALL,
     "frame_stats(samples, channels, head, frame_len, sums, totals) -> None\n\n"
     "Per-segment and whole-block per-channel sums of squares, and per-channel peak "
     "power, in one pass; "
     "see probes/_kernels.c."},
    {"sos_power", (PyCFunction)(void (*)(void))sos_power, METH_FASTCALL,
     "sos_power(samples, sos, zi, weights, power) -> None\n\n"
     "Second-order sections (K-weighting) over interleaved channels, squared and weighted-summed "
     "per frame, in one pass; see probes/_kernels.c."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "probes._kernels",
    "One-pass audio block statistics (compiled).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
