/*
 * refrun.c -- pytest-llmperf's own reference runner for llama2.c checkpoints.
 *
 * A single-file float32 inference program for the legacy ("version 0") llama2.c
 * checkpoint format and its tokenizer.bin, with the command line, the printed
 * text and the "achieved tok/s" line of llama2.c's run.c in generate mode.
 * The float32 arithmetic is written in the same order as run.c (sums
 * accumulated left to right in a float, the same divisions and library calls),
 * so that with -t 0 both programs print the same text on the same files when
 * built with the same compiler and flags.
 *
 * Build:   cc -O3 -Wall -o refrun refrun.c -lm          (add -fopenmp for threads)
 * Run:     refrun model.bin -z tokenizer.bin -n 256 -i "Once upon a time"
 *
 * Only generate mode is implemented; "-m chat" prints an error and exits 1,
 * since the plugin only benchmarks generation.
 *
 * It also runs version 2 (Q8_0) checkpoints, those of llama2.c's runq.c: int8
 * weights in groups with a float32 scale each, activations quantized the same
 * way before every matrix-vector product, int8 x int8 products summed in
 * int32 per group (the arithmetic of runq.c). That makes it the machine-speed
 * probe of runq rows: a float32 probe does not follow an int8 run's speed.
 *
 * Extra (off by default, the output stays the same): when the environment
 * variable LLMPERF_REFRUN_STATS names a file, one line is written to it at the
 * end:
 *     positions=<P> prompt_tokens=<N> elapsed_ms=<E> elapsed_ns=<T>
 * P is the number of forward passes run, N the number of prompt tokens after
 * encoding (BOS included), E the same millisecond difference the tok/s figure
 * uses and T the CLOCK_MONOTONIC nanoseconds over the same region (0 when the
 * clock was never started, that is when fewer than two positions ran).
 *
 * Needs only a C99 compiler, libm and POSIX (mmap, clock_gettime).
 */
#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* OpenMP is optional; the pragmas disappear (without an unknown-pragma
 * warning) when the compiler is not asked for it. */
#ifdef _OPENMP
#define REFRUN_PARALLEL_FOR _Pragma("omp parallel for")
#else
#define REFRUN_PARALLEL_FOR
#endif

#define TOKEN_BOS 1

/* ------------------------------------------------------------------------ */
/* model shape and weights                                                   */

typedef struct {
    int dim;        /* width of the residual stream */
    int hidden;     /* width of the feed-forward layer */
    int layers;
    int heads;      /* query heads */
    int kv_heads;   /* key/value heads (grouped-query attention) */
    int vocab;      /* absolute value of the header's vocab_size */
    int seq_len;    /* positions the KV cache holds */
    int head_size;  /* dim / heads */
    int kv_dim;     /* dim * kv_heads / heads */
} Shape;

typedef struct {
    const float *embed;      /* vocab x dim */
    const float *norm_att;   /* layers x dim */
    const float *wq;         /* layers x dim x dim */
    const float *wk;         /* layers x kv_dim x dim */
    const float *wv;         /* layers x kv_dim x dim */
    const float *wo;         /* layers x dim x dim */
    const float *norm_ffn;   /* layers x dim */
    const float *w_gate;     /* layers x hidden x dim  (w1) */
    const float *w_down;     /* layers x dim x hidden  (w2) */
    const float *w_up;       /* layers x hidden x dim  (w3) */
    const float *norm_final; /* dim */
    const float *classifier; /* vocab x dim: the embedding when shared */
} Weights;

/* an int8 tensor of a Q8_0 checkpoint: values, then one float32 scale per group */
typedef struct {
    const int8_t *q;
    const float *s;
} QTensor;

/* the weights of a Q8_0 checkpoint: one QTensor per layer for each matrix */
typedef struct {
    QTensor *wq, *wk, *wv, *wo, *w_gate, *w_down, *w_up;
    QTensor classifier;
    float *embed; /* the embedding table, dequantized at load (as runq.c does) */
} QWeights;

/* an activation vector quantized to int8 (writable buffers) */
typedef struct {
    int8_t *q;
    float *s;
} QVector;

typedef struct {
    Shape shape;
    Weights w;
    int q8;             /* a Q8_0 (version 2) checkpoint: qw is used instead of w's matrices */
    int group;          /* its group size */
    QWeights qw;
    QVector xq, hq;     /* quantized activations (dim, hidden) */
    void *map;          /* the whole checkpoint, mapped read-only */
    size_t map_bytes;
    /* activations */
    float *x, *xb, *xb2, *hb, *hb2, *q, *att, *logits;
    /* KV cache: layers x seq_len x kv_dim each */
    float *kcache, *vcache;
} Model;

static void die(const char *fmt, const char *arg) {
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(EXIT_FAILURE);
}

static void *alloc_or_die(size_t count, size_t size, const char *what) {
    void *p = calloc(count ? count : 1, size);
    if (p == NULL) die("refrun: out of memory allocating %s", what);
    return p;
}

/* the limits of pytest-llmperf's checker (models.py): beyond them the sizes below could
 * overflow, and no llama2.c model comes near them; sets head_size and kv_dim */
/* open a checkpoint for reading and stat it, or die naming it */
static int open_checkpoint(const char *path, struct stat *st) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) die("refrun: cannot open checkpoint %s", path);
    if (fstat(fd, st) != 0) {
        close(fd);
        die("refrun: cannot stat checkpoint %s", path);
    }
    return fd;
}

static void check_shape(Shape *s, const char *path) {
    if (s->dim <= 0 || s->hidden <= 0 || s->layers <= 0 || s->heads <= 0 || s->kv_heads <= 0
        || s->vocab <= 0 || s->seq_len <= 0 || s->dim % s->heads != 0
        || s->heads % s->kv_heads != 0 || (s->dim / s->heads) % 2 != 0
        || s->dim > (1 << 16) || s->hidden > (1 << 18) || s->layers > (1 << 10) || s->heads > (1 << 12)
        || s->vocab > (1 << 22) || s->seq_len > (1 << 20))
        die("refrun: checkpoint %s has an invalid header", path);
    s->head_size = s->dim / s->heads;
    s->kv_dim = s->dim * s->kv_heads / s->heads;
}

/* the activations and the KV cache of a model of shape m->shape */
static void alloc_state(Model *m) {
    const Shape *s = &m->shape;
    size_t D = (size_t)s->dim, H = (size_t)s->hidden, V = (size_t)s->vocab, KV = (size_t)s->kv_dim;
    size_t cache = (size_t)s->layers * (size_t)s->seq_len * KV;
    m->x = alloc_or_die(D, sizeof(float), "activations");
    m->xb = alloc_or_die(D, sizeof(float), "activations");
    m->xb2 = alloc_or_die(D, sizeof(float), "activations");
    m->hb = alloc_or_die(H, sizeof(float), "activations");
    m->hb2 = alloc_or_die(H, sizeof(float), "activations");
    m->q = alloc_or_die(D, sizeof(float), "activations");
    m->att = alloc_or_die((size_t)s->heads * (size_t)s->seq_len, sizeof(float), "attention scores");
    m->logits = alloc_or_die(V, sizeof(float), "logits");
    m->kcache = alloc_or_die(cache, sizeof(float), "the key cache");
    m->vcache = alloc_or_die(cache, sizeof(float), "the value cache");
}

#define Q8_MAGIC 0x616b3432u /* "ak42": llama2.c's versioned checkpoints */
#define Q8_HEADER_BYTES 256

static void load_q8_model(Model *m, const char *path, const unsigned char *head);

static void load_model(Model *m, const char *path) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "refrun: cannot open checkpoint %s: %s\n", path, strerror(errno));
        exit(EXIT_FAILURE);
    }
    unsigned char head[41];
    size_t got = fread(head, 1, sizeof head, f);
    fclose(f);
    memset(m, 0, sizeof *m);
    uint32_t magic = 0;
    if (got >= 4) memcpy(&magic, head, 4);
    if (magic == Q8_MAGIC) {
        if (got < sizeof head) die("refrun: checkpoint %s is shorter than its versioned header", path);
        load_q8_model(m, path, head);
        return;
    }
    if (got < 28) die("refrun: checkpoint %s is shorter than its 28-byte header", path);
    int32_t hdr[7];
    memcpy(hdr, head, sizeof hdr);

    Shape *s = &m->shape;
    int shared = hdr[5] > 0;
    s->dim = hdr[0];
    s->hidden = hdr[1];
    s->layers = hdr[2];
    s->heads = hdr[3];
    s->kv_heads = hdr[4];
    s->vocab = hdr[5] == INT32_MIN ? 0 : hdr[5] < 0 ? -hdr[5] : hdr[5]; /* INT32_MIN: invalid */
    s->seq_len = hdr[6];
    check_shape(s, path);

    struct stat st;
    int fd = open_checkpoint(path, &st);

    /* tensor sizes in floats, in file order */
    size_t D = (size_t)s->dim, H = (size_t)s->hidden, L = (size_t)s->layers;
    size_t V = (size_t)s->vocab, KV = (size_t)s->kv_dim;
    size_t rope_half = (size_t)s->seq_len * (size_t)s->head_size / 2;
    /* within the limits above this is below 2^47 bytes: no overflow in 64 bits */
    uint64_t floats = (uint64_t)V * D + (uint64_t)L * D + (uint64_t)L * D * D + 2 * (uint64_t)L * KV * D
                      + (uint64_t)L * D * D + (uint64_t)L * D + 3 * (uint64_t)L * H * D + D
                      + 2 * (uint64_t)rope_half + (shared ? 0 : (uint64_t)V * D);
    uint64_t need = 28 + floats * sizeof(float);
    if (st.st_size < 0 || (uint64_t)st.st_size < need || need > (uint64_t)SIZE_MAX) {
        close(fd);
        die("refrun: checkpoint %s is truncated (smaller than its header promises)", path);
    }

    m->map_bytes = (size_t)st.st_size;
    m->map = mmap(NULL, m->map_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd); /* the mapping stays valid */
    if (m->map == MAP_FAILED) die("refrun: mmap failed for checkpoint %s", path);

    const float *p = (const float *)((const char *)m->map + 28);
    Weights *w = &m->w;
    w->embed = p;       p += V * D;
    w->norm_att = p;    p += L * D;
    w->wq = p;          p += L * D * D;
    w->wk = p;          p += L * KV * D;
    w->wv = p;          p += L * KV * D;
    w->wo = p;          p += L * D * D;
    w->norm_ffn = p;    p += L * D;
    w->w_gate = p;      p += L * H * D;
    w->w_down = p;      p += L * D * H;
    w->w_up = p;        p += L * H * D;
    w->norm_final = p;  p += D;
    p += 2 * rope_half; /* precomputed RoPE tables: unused, RoPE is computed on the fly */
    w->classifier = shared ? w->embed : p;
    alloc_state(m);
}

/* `count` tensors of `each` int8 values and each / group scales, from *at on; advances *at */
static QTensor *map_qtensors(const unsigned char **at, int count, size_t each, size_t group) {
    QTensor *t = alloc_or_die((size_t)count, sizeof(QTensor), "the int8 tensors");
    for (int i = 0; i < count; i++) {
        t[i].q = (const int8_t *)*at;
        *at += each;
        t[i].s = (const float *)(const void *)*at;
        *at += each / group * sizeof(float);
    }
    return t;
}

/* a version 2 (Q8_0) checkpoint, as llama2.c's export.py writes it for runq.c: a 256-byte
 * header (magic, version 2, the seven shape fields, a shared-classifier byte, the group size),
 * the float32 norms, then the int8 tensors, each followed by its scales */
static void load_q8_model(Model *m, const char *path, const unsigned char *head) {
    int32_t version, hdr[7], group;
    memcpy(&version, head + 4, 4);
    memcpy(hdr, head + 8, sizeof hdr);
    int shared = head[36];
    memcpy(&group, head + 37, 4);
    if (version != 2) die("refrun: checkpoint %s is a versioned checkpoint, but not version 2 (Q8_0)", path);
    Shape *s = &m->shape;
    s->dim = hdr[0];
    s->hidden = hdr[1];
    s->layers = hdr[2];
    s->heads = hdr[3];
    s->kv_heads = hdr[4];
    s->vocab = hdr[5];
    s->seq_len = hdr[6];
    check_shape(s, path);
    if (group <= 0 || s->dim % group != 0 || s->hidden % group != 0 || shared > 1)
        die("refrun: checkpoint %s has an invalid Q8_0 header", path);
    m->q8 = 1;
    m->group = group;

    size_t D = (size_t)s->dim, H = (size_t)s->hidden, L = (size_t)s->layers;
    size_t V = (size_t)s->vocab, KV = (size_t)s->kv_dim, G = (size_t)group;
    /* within the limits of check_shape these sums stay far below 2^63 */
    uint64_t q8 = 0;
    uint64_t sizes[] = {V * D, L * D * D, L * KV * D, L * KV * D, L * D * D, L * H * D, L * D * H, L * H * D,
                        shared ? 0 : V * D};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) q8 += sizes[i] + sizes[i] / G * sizeof(float);
    uint64_t need = Q8_HEADER_BYTES + (2 * L * D + D) * sizeof(float) + q8;

    struct stat st;
    int fd = open_checkpoint(path, &st);
    if (st.st_size < 0 || (uint64_t)st.st_size < need || need > (uint64_t)SIZE_MAX) {
        close(fd);
        die("refrun: checkpoint %s is truncated (smaller than its header promises)", path);
    }
    m->map_bytes = (size_t)st.st_size;
    m->map = mmap(NULL, m->map_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m->map == MAP_FAILED) die("refrun: mmap failed for checkpoint %s", path);

    const float *f = (const float *)(const void *)((const char *)m->map + Q8_HEADER_BYTES);
    m->w.norm_att = f;    f += L * D;
    m->w.norm_ffn = f;    f += L * D;
    m->w.norm_final = f;  f += D;
    const unsigned char *at = (const unsigned char *)f;
    QWeights *qw = &m->qw;
    QTensor *embed = map_qtensors(&at, 1, V * D, G);
    qw->wq = map_qtensors(&at, s->layers, D * D, G);
    qw->wk = map_qtensors(&at, s->layers, KV * D, G);
    qw->wv = map_qtensors(&at, s->layers, KV * D, G);
    qw->wo = map_qtensors(&at, s->layers, D * D, G);
    qw->w_gate = map_qtensors(&at, s->layers, H * D, G);
    qw->w_down = map_qtensors(&at, s->layers, D * H, G);
    qw->w_up = map_qtensors(&at, s->layers, H * D, G);
    if (shared) {
        qw->classifier = embed[0];
    } else {
        QTensor *cls = map_qtensors(&at, 1, V * D, G);
        qw->classifier = cls[0];
        free(cls);
    }
    qw->embed = alloc_or_die(V * D, sizeof(float), "the embedding table");
    for (size_t i = 0; i < V * D; i++) qw->embed[i] = embed[0].q[i] * embed[0].s[i / G];
    free(embed);
    m->xq.q = alloc_or_die(D, 1, "activations");
    m->xq.s = alloc_or_die(D / G, sizeof(float), "activations");
    m->hq.q = alloc_or_die(H, 1, "activations");
    m->hq.s = alloc_or_die(H / G, sizeof(float), "activations");
    alloc_state(m);
}

static void free_model(Model *m) {
    free(m->x); free(m->xb); free(m->xb2); free(m->hb); free(m->hb2);
    free(m->q); free(m->att); free(m->logits); free(m->kcache); free(m->vcache);
    if (m->q8) {
        free(m->qw.wq); free(m->qw.wk); free(m->qw.wv); free(m->qw.wo);
        free(m->qw.w_gate); free(m->qw.w_down); free(m->qw.w_up); free(m->qw.embed);
        free(m->xq.q); free(m->xq.s); free(m->hq.q); free(m->hq.s);
    }
    munmap(m->map, m->map_bytes);
}

/* ------------------------------------------------------------------------ */
/* arithmetic kernels (float32, fixed order of operations)                  */

/* out = weight * (x / rms(x)), rms over `n` values with epsilon 1e-5 */
static void rms_normalize(float *out, const float *x, const float *weight, int n) {
    float sq = 0.0f;
    for (int j = 0; j < n; j++) sq += x[j] * x[j];
    sq /= n;
    sq += 1e-5f;
    float inv = 1.0f / sqrtf(sq);
    for (int j = 0; j < n; j++) out[j] = weight[j] * (inv * x[j]);
}

/* in-place softmax over the first n values */
static void softmax_inplace(float *v, int n) {
    float top = v[0];
    for (int i = 1; i < n; i++)
        if (v[i] > top) top = v[i];
    float total = 0.0f;
    for (int i = 0; i < n; i++) {
        v[i] = expf(v[i] - top);
        total += v[i];
    }
    for (int i = 0; i < n; i++) v[i] /= total;
}

/* out[r] = sum_c mat[r * cols + c] * in[c] for r < rows; one row per thread */
static void mat_vec(float *out, const float *in, const float *mat, int cols, int rows) {
    int r;
    REFRUN_PARALLEL_FOR
    for (r = 0; r < rows; r++) {
        const float *row = mat + (size_t)r * (size_t)cols;
        float acc = 0.0f;
        for (int c = 0; c < cols; c++) acc += row[c] * in[c];
        out[r] = acc;
    }
}

/* rotate the pair (v[i], v[i+1]) by the angle whose cosine/sine are given */
static void rotate_pair(float *v, int i, float cs, float sn) {
    float a = v[i];
    float b = v[i + 1];
    v[i] = a * cs - b * sn;
    v[i + 1] = a * sn + b * cs;
}

/* rotary embedding of q and of the key row k_now at position pos, over the whole width */
static void rotate_qk(Model *m, float *k_now, int pos) {
    const Shape *s = &m->shape;
    const int dim = s->dim, hs = s->head_size, kv_dim = s->kv_dim;
    for (int i = 0; i < dim; i += 2) {
        int within = i % hs;
        float freq = 1.0f / powf(10000.0f, within / (float)hs);
        float angle = pos * freq;
        float cs = cosf(angle);
        float sn = sinf(angle);
        rotate_pair(m->q, i, cs, sn);
        if (i < kv_dim) rotate_pair(k_now, i, cs, sn);
    }
}

/* multi-head attention of q over this layer's caches kc, vc up to pos; the result into m->xb */
static void attend(Model *m, const float *kc, const float *vc, int pos) {
    const Shape *s = &m->shape;
    const int hs = s->head_size;
    const int group = s->heads / s->kv_heads; /* query heads per kv head */
    const size_t KV = (size_t)s->kv_dim;
    int h;
    REFRUN_PARALLEL_FOR
    for (h = 0; h < s->heads; h++) {
        const float *qh = m->q + (size_t)h * hs;
        float *scores = m->att + (size_t)h * (size_t)s->seq_len;
        size_t kv_off = (size_t)(h / group) * (size_t)hs;
        for (int t = 0; t <= pos; t++) {
            const float *kt = kc + (size_t)t * KV + kv_off;
            float dot = 0.0f;
            for (int i = 0; i < hs; i++) dot += qh[i] * kt[i];
            dot /= sqrtf(hs);
            scores[t] = dot;
        }
        softmax_inplace(scores, pos + 1);
        float *out = m->xb + (size_t)h * hs;
        memset(out, 0, (size_t)hs * sizeof(float));
        for (int t = 0; t <= pos; t++) {
            const float *vt = vc + (size_t)t * KV + kv_off;
            float a = scores[t];
            for (int i = 0; i < hs; i++) out[i] += a * vt[i];
        }
    }
}

/* hb = silu(hb) * hb2, over the hidden width */
static void swiglu(Model *m) {
    for (int i = 0; i < m->shape.hidden; i++) {
        float g = m->hb[i];
        g *= 1.0f / (1.0f + expf(-g));
        g *= m->hb2[i];
        m->hb[i] = g;
    }
}

/* one token at one position through the network; fills m->logits */
static void forward(Model *m, int token, int pos) {
    const Shape *s = &m->shape;
    const Weights *w = &m->w;
    const int dim = s->dim, hidden = s->hidden, kv_dim = s->kv_dim;
    const size_t D = (size_t)dim, H = (size_t)hidden, KV = (size_t)kv_dim;
    float *x = m->x;

    memcpy(x, w->embed + (size_t)token * D, D * sizeof(float));

    for (int l = 0; l < s->layers; l++) {
        const size_t L = (size_t)l;
        float *kc = m->kcache + L * (size_t)s->seq_len * KV; /* this layer's caches */
        float *vc = m->vcache + L * (size_t)s->seq_len * KV;
        float *k_now = kc + (size_t)pos * KV;
        float *v_now = vc + (size_t)pos * KV;

        /* attention block: q, k, v (k and v straight into the cache row) */
        rms_normalize(m->xb, x, w->norm_att + L * D, dim);
        mat_vec(m->q, m->xb, w->wq + L * D * D, dim, dim);
        mat_vec(k_now, m->xb, w->wk + L * KV * D, dim, kv_dim);
        mat_vec(v_now, m->xb, w->wv + L * KV * D, dim, kv_dim);
        rotate_qk(m, k_now, pos);
        attend(m, kc, vc, pos);

        mat_vec(m->xb2, m->xb, w->wo + L * D * D, dim, dim);
        for (int i = 0; i < dim; i++) x[i] += m->xb2[i];

        /* feed-forward block: down(silu(gate x) * up x) */
        rms_normalize(m->xb, x, w->norm_ffn + L * D, dim);
        mat_vec(m->hb, m->xb, w->w_gate + L * H * D, dim, hidden);
        mat_vec(m->hb2, m->xb, w->w_up + L * H * D, dim, hidden);
        swiglu(m);
        mat_vec(m->xb, m->hb, w->w_down + L * D * H, hidden, dim);
        for (int i = 0; i < dim; i++) x[i] += m->xb[i];
    }

    rms_normalize(x, x, w->norm_final, dim);
    mat_vec(m->logits, x, w->classifier, dim, s->vocab);
}

/* ------------------------------------------------------------------------ */
/* the int8 (Q8_0) forward pass, with runq.c's arithmetic                    */

/* out = x in groups of `group`: scale = max |x| / 127, q = round(x / scale) (0 for a group of
 * zeros, where runq.c divides by zero) */
static void quantize_vec(QVector *out, const float *x, int n, int group) {
    for (int g = 0; g < n / group; g++) {
        const float *xg = x + (size_t)g * (size_t)group;
        float top = 0.0f;
        for (int i = 0; i < group; i++) {
            float a = fabsf(xg[i]);
            if (a > top) top = a;
        }
        float scale = top / 127.0f;
        out->s[g] = scale;
        int8_t *q = out->q + (size_t)g * (size_t)group;
        for (int i = 0; i < group; i++) q[i] = scale > 0.0f ? (int8_t)roundf(xg[i] / scale) : 0;
    }
}

/* out[r] = sum over the groups of row r of (the int32 sum of int8 products) * both scales */
static void mat_vec_q8(float *out, const QVector *x, const QTensor *w, int cols, int rows, int group) {
    int r;
    REFRUN_PARALLEL_FOR
    for (r = 0; r < rows; r++) {
        const size_t in = (size_t)r * (size_t)cols;
        float acc = 0.0f;
        for (int j = 0; j <= cols - group; j += group) {
            int32_t sum = 0;
            for (int k = 0; k < group; k++) sum += (int32_t)x->q[j + k] * (int32_t)w->q[in + (size_t)(j + k)];
            acc += (float)sum * w->s[(in + (size_t)j) / (size_t)group] * x->s[j / group];
        }
        out[r] = acc;
    }
}

/* forward() of a Q8_0 checkpoint: every matrix-vector product on int8 activations and weights */
static void forward_q8(Model *m, int token, int pos) {
    const Shape *s = &m->shape;
    const Weights *w = &m->w;
    const QWeights *qw = &m->qw;
    const int dim = s->dim, hidden = s->hidden, kv_dim = s->kv_dim, g = m->group;
    const size_t D = (size_t)dim, KV = (size_t)kv_dim;
    float *x = m->x;

    memcpy(x, qw->embed + (size_t)token * D, D * sizeof(float));

    for (int l = 0; l < s->layers; l++) {
        const size_t L = (size_t)l;
        float *kc = m->kcache + L * (size_t)s->seq_len * KV;
        float *vc = m->vcache + L * (size_t)s->seq_len * KV;
        float *k_now = kc + (size_t)pos * KV;
        float *v_now = vc + (size_t)pos * KV;

        rms_normalize(m->xb, x, w->norm_att + L * D, dim);
        quantize_vec(&m->xq, m->xb, dim, g);
        mat_vec_q8(m->q, &m->xq, &qw->wq[l], dim, dim, g);
        mat_vec_q8(k_now, &m->xq, &qw->wk[l], dim, kv_dim, g);
        mat_vec_q8(v_now, &m->xq, &qw->wv[l], dim, kv_dim, g);
        rotate_qk(m, k_now, pos);
        attend(m, kc, vc, pos);

        quantize_vec(&m->xq, m->xb, dim, g);
        mat_vec_q8(m->xb2, &m->xq, &qw->wo[l], dim, dim, g);
        for (int i = 0; i < dim; i++) x[i] += m->xb2[i];

        rms_normalize(m->xb, x, w->norm_ffn + L * D, dim);
        quantize_vec(&m->xq, m->xb, dim, g);
        mat_vec_q8(m->hb, &m->xq, &qw->w_gate[l], dim, hidden, g);
        mat_vec_q8(m->hb2, &m->xq, &qw->w_up[l], dim, hidden, g);
        swiglu(m);
        quantize_vec(&m->hq, m->hb, hidden, g);
        mat_vec_q8(m->xb, &m->hq, &qw->w_down[l], hidden, dim, g);
        for (int i = 0; i < dim; i++) x[i] += m->xb[i];
    }

    rms_normalize(x, x, w->norm_final, dim);
    quantize_vec(&m->xq, x, dim, g);
    mat_vec_q8(m->logits, &m->xq, &qw->classifier, dim, s->vocab, g);
}

/* ------------------------------------------------------------------------ */
/* tokenizer                                                                 */

typedef struct {
    const char *text;
    int id;
} VocabEntry;

typedef struct {
    int size;
    char **piece;        /* NUL-terminated token strings */
    float *score;        /* merge priority */
    VocabEntry *sorted;  /* pieces sorted by strcmp, for lookups */
    size_t longest;      /* longest piece in bytes (at least the file's claim) */
    char bytes[256][2];  /* one-byte strings for the <0xHH> tokens */
} Vocab;

static int by_text(const void *a, const void *b) {
    return strcmp(((const VocabEntry *)a)->text, ((const VocabEntry *)b)->text);
}

static void load_vocab(Vocab *v, const char *path, int size) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "refrun: cannot open tokenizer %s: %s\n", path, strerror(errno));
        exit(EXIT_FAILURE);
    }
    uint32_t claimed;
    if (fread(&claimed, sizeof(claimed), 1, f) != 1) die("refrun: cannot read tokenizer %s", path);
    v->size = size;
    v->longest = claimed;
    v->piece = alloc_or_die((size_t)size, sizeof(char *), "the vocabulary");
    v->score = alloc_or_die((size_t)size, sizeof(float), "the vocabulary");
    v->sorted = alloc_or_die((size_t)size, sizeof(VocabEntry), "the vocabulary");
    for (int i = 0; i < size; i++) {
        int32_t len;
        if (fread(&v->score[i], sizeof(float), 1, f) != 1 || fread(&len, sizeof(len), 1, f) != 1
            || len < 0)
            die("refrun: tokenizer %s ends before the model's vocab_size tokens", path);
        v->piece[i] = alloc_or_die((size_t)len + 1, 1, "the vocabulary");
        if (len > 0 && fread(v->piece[i], (size_t)len, 1, f) != 1)
            die("refrun: tokenizer %s ends before the model's vocab_size tokens", path);
        v->piece[i][len] = '\0';
        if ((size_t)len > v->longest) v->longest = (size_t)len;
        v->sorted[i].text = v->piece[i];
        v->sorted[i].id = i;
    }
    fclose(f);
    qsort(v->sorted, (size_t)size, sizeof(VocabEntry), by_text);
    for (int b = 0; b < 256; b++) {
        v->bytes[b][0] = (char)b;
        v->bytes[b][1] = '\0';
    }
}

static void free_vocab(Vocab *v) {
    for (int i = 0; i < v->size; i++) free(v->piece[i]);
    free(v->piece);
    free(v->score);
    free(v->sorted);
}

static int find_piece(const Vocab *v, const char *text) {
    VocabEntry key = {text, 0};
    const VocabEntry *hit = bsearch(&key, v->sorted, (size_t)v->size, sizeof(VocabEntry), by_text);
    return hit ? hit->id : -1;
}

/* text -> token ids: BOS, a dummy-prefix space for non-empty text, one token
 * per UTF-8 code point (byte tokens id = byte + 3 when the code point is not
 * a piece), then greedy merging of the adjacent pair whose concatenation is
 * the piece with the highest score (the leftmost one on ties).
 * `out` must hold strlen(text) + 3 ids. Returns the number of ids; exits
 * with a message when an id is beyond the vocabulary (a vocabulary smaller
 * than BOS or the byte tokens), before the merges would look it up. */
static int encode_text(const Vocab *v, const char *text, int *out, const char *path) {
    int n = 0;
    out[n++] = TOKEN_BOS;
    if (text[0] != '\0') {
        int space = find_piece(v, " ");
        /* run.c assumes the vocabulary has a " " piece; fall back to the
         * space byte token rather than storing an invalid id */
        out[n++] = space >= 0 ? space : (unsigned char)' ' + 3;
    }

    char *buf = alloc_or_die(2 * v->longest + 3, 1, "the prompt");
    size_t used = 0;
    for (const char *c = text; *c != '\0'; c++) {
        if ((*c & 0xC0) != 0x80) used = 0; /* a lead byte or ASCII starts a code point */
        buf[used++] = *c;
        buf[used] = '\0';
        if ((c[1] & 0xC0) == 0x80 && used < 4) continue; /* more continuation bytes follow */
        int id = find_piece(v, buf);
        if (id >= 0) {
            out[n++] = id;
        } else {
            for (size_t i = 0; i < used; i++) out[n++] = (unsigned char)buf[i] + 3;
        }
        used = 0;
    }
    for (int i = 0; i < n; i++)
        if (out[i] < 0 || out[i] >= v->size)
            die("refrun: the prompt needs token ids the tokenizer %s does not have (BOS is 1, byte tokens "
                "3 to 258)", path);

    for (;;) {
        float best = -1e10f;
        int best_id = -1, at = -1;
        for (int i = 0; i + 1 < n; i++) {
            size_t la = strlen(v->piece[out[i]]); /* both <= longest: buf is large enough */
            size_t lb = strlen(v->piece[out[i + 1]]);
            memcpy(buf, v->piece[out[i]], la);
            memcpy(buf + la, v->piece[out[i + 1]], lb + 1);
            int id = find_piece(v, buf);
            if (id >= 0 && v->score[id] > best) {
                best = v->score[id];
                best_id = id;
                at = i;
            }
        }
        if (at < 0) break;
        out[at] = best_id;
        memmove(out + at + 1, out + at + 2, (size_t)(n - at - 2) * sizeof(int));
        n--;
    }
    free(buf);
    return n;
}

/* the text printed for `next` when it follows `prev` */
static const char *token_text(const Vocab *v, int prev, int next) {
    const char *p = v->piece[next];
    if (prev == TOKEN_BOS && p[0] == ' ') p++; /* no leading space right after BOS */
    unsigned char byte;
    if (sscanf(p, "<0x%02hhX>", &byte) == 1) p = v->bytes[byte];
    return p;
}

/* print a piece, but not a lone byte that is neither printable nor space */
static void print_piece(const char *p) {
    if (p == NULL || p[0] == '\0') return;
    if (p[1] == '\0') {
        unsigned char c = (unsigned char)p[0];
        if (!(isprint(c) || isspace(c))) return;
    }
    fputs(p, stdout);
}

/* ------------------------------------------------------------------------ */
/* sampling                                                                  */

typedef struct {
    float prob;
    int id;
} Candidate;

typedef struct {
    float temperature;
    float topp;
    uint64_t state; /* xorshift64* state */
    Candidate *cand;
    int n;
} Sampler;

static uint32_t next_u32(uint64_t *st) {
    *st ^= *st >> 12;
    *st ^= *st << 25;
    *st ^= *st >> 27;
    return (uint32_t)((*st * 0x2545F4914F6CDD1DULL) >> 32);
}

static float next_unit(uint64_t *st) { /* in [0, 1) */
    return (next_u32(st) >> 8) / 16777216.0f;
}

static int pick_max(const float *v, int n) {
    int best = 0;
    float top = v[0];
    for (int i = 1; i < n; i++) {
        if (v[i] > top) {
            top = v[i];
            best = i;
        }
    }
    return best;
}

static int pick_from_cdf(const float *prob, int n, float coin) {
    float cdf = 0.0f;
    for (int i = 0; i < n; i++) {
        cdf += prob[i];
        if (coin < cdf) return i;
    }
    return n - 1;
}

static int by_prob_desc(const void *a, const void *b) {
    float pa = ((const Candidate *)a)->prob, pb = ((const Candidate *)b)->prob;
    return (pa < pb) - (pa > pb);
}

static int pick_nucleus(const float *prob, int n, float topp, Candidate *cand, float coin) {
    /* a token below (1 - topp) / (n - 1) can never be inside the nucleus */
    const float floor_p = (1.0f - topp) / (n - 1);
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (prob[i] >= floor_p) {
            cand[m].id = i;
            cand[m].prob = prob[i];
            m++;
        }
    }
    if (m == 0) return pick_from_cdf(prob, n, coin); /* NaN probabilities: nothing passed the floor */
    qsort(cand, (size_t)m, sizeof(Candidate), by_prob_desc);
    float mass = 0.0f;
    int last = m - 1;
    for (int i = 0; i < m; i++) {
        mass += cand[i].prob;
        if (mass > topp) {
            last = i;
            break;
        }
    }
    float target = coin * mass;
    float cdf = 0.0f;
    for (int i = 0; i <= last; i++) {
        cdf += cand[i].prob;
        if (target < cdf) return cand[i].id;
    }
    return cand[last].id;
}

static int choose(Sampler *sm, float *logits) {
    if (sm->temperature == 0.0f) return pick_max(logits, sm->n);
    for (int i = 0; i < sm->n; i++) logits[i] /= sm->temperature;
    softmax_inplace(logits, sm->n);
    float coin = next_unit(&sm->state);
    if (sm->topp <= 0 || sm->topp >= 1) return pick_from_cdf(logits, sm->n, coin);
    return pick_nucleus(logits, sm->n, sm->topp, sm->cand, coin);
}

/* ------------------------------------------------------------------------ */
/* clocks                                                                    */

static long wall_ms(void) { /* what run.c's tok/s figure is computed from */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ------------------------------------------------------------------------ */
/* command line                                                              */

static void usage(void) {
    fputs("Usage:   refrun <checkpoint> [options]\n"
          "Example: refrun model.bin -n 256 -i \"Once upon a time\"\n"
          "Options (each one flag of two characters and one value):\n"
          "  -t <float>  temperature, 0 = greedy argmax, default 1.0\n"
          "  -p <float>  top-p (nucleus) threshold in [0,1], default 0.9\n"
          "  -s <int>    random seed, default 0 = time-based\n"
          "  -n <int>    positions to run, prompt included; 0 = seq_len, default 256\n"
          "  -i <string> prompt\n"
          "  -z <string> tokenizer path, default tokenizer.bin\n"
          "  -m <string> mode: generate (chat is not supported), default generate\n"
          "  -y <string> system prompt (chat mode only)\n"
          "Environment: LLMPERF_REFRUN_STATS=<file> writes positions and timings there.\n",
          stderr);
    exit(EXIT_FAILURE);
}

int main(int argc, char **argv) {
    const char *checkpoint = NULL;
    const char *tokenizer = "tokenizer.bin";
    const char *prompt = NULL;
    const char *mode = "generate";
    float temperature = 1.0f;
    float topp = 0.9f;
    int steps = 256;
    uint64_t seed = 0;

    if (argc < 2) usage();
    checkpoint = argv[1];
    for (int i = 2; i < argc; i += 2) {
        const char *flag = argv[i];
        if (i + 1 >= argc || flag[0] != '-' || strlen(flag) != 2) usage();
        const char *val = argv[i + 1];
        switch (flag[1]) {
        case 't': temperature = (float)atof(val); break;
        case 'p': topp = (float)atof(val); break;
        case 's': seed = (uint64_t)(long long)atoi(val); break;
        case 'n': steps = atoi(val); break;
        case 'i': prompt = val; break;
        case 'z': tokenizer = val; break;
        case 'm': mode = val; break;
        case 'y': break; /* system prompt: only meaningful in chat mode */
        default: usage();
        }
    }
    if (seed == 0) seed = (unsigned int)time(NULL);
    if (temperature < 0.0) temperature = 0.0f;
    if (topp < 0.0 || topp > 1.0) topp = 0.9f;
    if (steps < 0) steps = 0;

    Model model;
    load_model(&model, checkpoint);
    if (steps == 0 || steps > model.shape.seq_len) steps = model.shape.seq_len;

    Vocab vocab;
    load_vocab(&vocab, tokenizer, model.shape.vocab);

    if (strcmp(mode, "generate") != 0) {
        if (strcmp(mode, "chat") == 0) {
            /* chat mode of run.c is deliberately left out: only generation is benchmarked */
            fputs("refrun: chat mode is not supported, use -m generate\n", stderr);
            exit(EXIT_FAILURE);
        }
        fprintf(stderr, "refrun: unknown mode %s\n", mode);
        usage();
    }

    Sampler sampler;
    sampler.temperature = temperature;
    sampler.topp = topp;
    sampler.state = seed;
    sampler.n = model.shape.vocab;
    sampler.cand = alloc_or_die((size_t)model.shape.vocab, sizeof(Candidate), "the sampler");

    if (prompt == NULL) prompt = "";
    int *prompt_ids = alloc_or_die(strlen(prompt) + 3, sizeof(int), "the prompt");
    int n_prompt = encode_text(&vocab, prompt, prompt_ids, tokenizer);

    long start_ms = 0;
    long long start_ns = 0;
    int token = prompt_ids[0];
    int pos = 0;
    while (pos < steps) {
        if (model.q8)
            forward_q8(&model, token, pos);
        else
            forward(&model, token, pos);
        int next = pos < n_prompt - 1 ? prompt_ids[pos + 1] : choose(&sampler, model.logits);
        pos++;
        if (next == TOKEN_BOS) break; /* BOS starts another sequence: stop */
        print_piece(token_text(&vocab, token, next));
        fflush(stdout);
        token = next;
        /* the clock starts after the first forward pass, which can be slower */
        if (start_ms == 0) {
            start_ms = wall_ms();
            start_ns = mono_ns();
        }
    }
    printf("\n");

    long end_ms = start_ms;
    long long end_ns = start_ns;
    if (pos > 1) {
        end_ms = wall_ms();
        end_ns = mono_ns();
        fprintf(stderr, "achieved tok/s: %f\n", (pos - 1) / (double)(end_ms - start_ms) * 1000);
    }

    const char *stats = getenv("LLMPERF_REFRUN_STATS");
    if (stats != NULL && stats[0] != '\0') {
        FILE *f = fopen(stats, "w");
        if (f == NULL) die("refrun: cannot write the stats file %s", stats);
        fprintf(f, "positions=%d prompt_tokens=%d elapsed_ms=%ld elapsed_ns=%lld\n", pos, n_prompt,
                end_ms - start_ms, end_ns - start_ns);
        if (fclose(f) != 0) die("refrun: cannot write the stats file %s", stats);
    }

    free(prompt_ids);
    free(sampler.cand);
    free_vocab(&vocab);
    free_model(&model);
    return 0;
}
