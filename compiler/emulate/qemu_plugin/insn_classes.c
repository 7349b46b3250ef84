/*
 * edgekiln's TCG plugin for qemu-aarch64 (QEMU 7.2, plugin API version 1): counts the instructions a
 * guest process executes, by class, per translated block. Written for edgekiln's emulated witness
 * (compiler/emulate/witness.py), which runs one warm invoke of a model between two marker syscalls, and turns
 * the blocks' guest addresses into shared-library symbols through the guest's /proc/self/maps.
 *
 * The window: the guest marks where counting starts and ends with lseek(-1, MARK_START / MARK_END, 0), which
 * fails with EBADF and does nothing else; the plugin snapshots every block's execution count at each mark and
 * writes the difference. So only the invoke is counted, exactly, however much the process did around it (a
 * difference of two whole processes went negative when start-up, billions of instructions, varied by more
 * than a tiny model's invoke). Without marks the whole process is counted.
 *
 * Usage: qemu-aarch64 -plugin PATH/insn_classes.so,out=/host/path.json ...
 *
 * Why per block and not qemu_plugin_insn_symbol(): QEMU's symbol lookup sees only the binaries it
 * loaded itself (the executable and ld.so), never the libraries the guest's ld.so maps (XNNPACK lives
 * in one), so the plugin writes each block's start address and the caller resolves it.
 *
 * Built with `cc -shared -fPIC -O2`; with -DEDGEKILN_CLASSIFY_ONLY only the decoder is compiled (the
 * unit tests load that with ctypes, with no QEMU present).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Classes; the names are written into the JSON in this order. */
enum insn_class {
    INT_SIMD_MAC,  /* integer SIMD multiply and multiply-accumulate: MUL, MLA, SMULL, SMLAL, SQDMULH, SDOT */
    FLOAT_SIMD,    /* floating point, vector or scalar: FMLA, FMUL, FADD, FCVT, SCVTF */
    SIMD_OTHER,    /* other SIMD: integer add/shift/compare/narrow, moves, permutes, tables */
    LOAD_STORE,    /* every load and store, general-purpose or SIMD */
    BRANCH,        /* B, BL, B.cond, CBZ, TBZ, BR, BLR, RET */
    OTHER,         /* general-purpose data processing, system instructions */
    N_CLASSES
};
static const char *const class_names[N_CLASSES] = {
    "int_simd_mac", "float_simd", "simd_other", "load_store", "branch", "other"};

/* Encodings per the Arm A64 instruction set (Arm ARM, "A64 instruction set encoding"): the top-level
 * group is op0 = bits 28:25; the Advanced SIMD groups below are matched with bits 30 and 28 cleared,
 * where the vector (0 Q U 0111x) and scalar (01 U 1111x) forms of a group coincide. */

static int is_branch(uint32_t i)
{
    return (i & 0x7C000000u) == 0x14000000u     /* B, BL */
        || (i & 0x7E000000u) == 0x34000000u     /* CBZ, CBNZ */
        || (i & 0x7E000000u) == 0x36000000u     /* TBZ, TBNZ */
        || (i & 0xFF000010u) == 0x54000000u     /* B.cond */
        || (i & 0xFE000000u) == 0xD6000000u;    /* BR, BLR, RET (unconditional branch, register) */
}

/* AdvSIMD three same: opcode bits 15:11. 11xxx are the floating-point ones (FMLA, FADD, FMUL, ...). */
static int three_same(uint32_t i)
{
    uint32_t op = (i >> 11) & 0x1F, u = (i >> 29) & 1;
    if (op >= 0x18)
        return FLOAT_SIMD;
    if (op == 0x12 || op == 0x16 || (op == 0x13 && !u))  /* MLA/MLS, SQ(R)DMULH, MUL (U=1: PMUL) */
        return INT_SIMD_MAC;
    return SIMD_OTHER;
}

/* AdvSIMD three different: opcode bits 15:12; 1000..1101 are SMLAL, SQDMLAL, SMLSL, SQDMLSL, SMULL, SQDMULL. */
static int three_different(uint32_t i)
{
    uint32_t op = (i >> 12) & 0xF;
    return op >= 0x8 && op <= 0xD ? INT_SIMD_MAC : SIMD_OTHER;
}

/* AdvSIMD by element: opcode bits 15:12. FP: FMLA 0001, FMLS 0101, FMUL 0001 (U=0), FMULX 1001 (U=1),
 * FMLAL/FMLSL 0000/0100 (U=0) and 1000/1100 (U=1), FCMLA 0xx1 (U=1); the rest are integer multiplies. */
static int by_element(uint32_t i)
{
    uint32_t op = (i >> 12) & 0xF, u = (i >> 29) & 1;
    int fp = op == 0x1 || op == 0x5 || op == 0x9 || (!u && (op == 0x0 || op == 0x4))
          || (u && (op == 0x8 || op == 0xC || op == 0x3 || op == 0x7));
    return fp ? FLOAT_SIMD : INT_SIMD_MAC;
}

/* AdvSIMD two-register misc: opcode bits 16:12, size bit 23. FP: FCMxx #0 and FABS/FNEG (01100..01111
 * with size<1> = 1), FCVTN/FCVTL (1011x), rounding and conversions (11xxx) except URECPE/URSQRTE. */
static int two_reg_misc(uint32_t i)
{
    uint32_t op = (i >> 12) & 0x1F, size1 = (i >> 23) & 1;
    if ((op >= 0x0C && op <= 0x0F && size1) || op == 0x16 || op == 0x17 || (op >= 0x18 && !(op == 0x1C && size1)))
        return FLOAT_SIMD;
    return SIMD_OTHER;
}

/* Across lanes (vector) and pairwise (scalar): FMAXNM(V/P) 01100, FADDP 01101, FMAX(V/P) 01111. */
static int across_lanes(uint32_t i)
{
    uint32_t op = (i >> 12) & 0x1F;
    return op == 0x0C || op == 0x0D || op == 0x0F ? FLOAT_SIMD : SIMD_OTHER;
}

/* Shift by immediate: SCVTF/UCVTF 11100 and FCVTZS/FCVTZU 11111 (fixed point) are floating point. */
static int shift_by_immediate(uint32_t i)
{
    uint32_t op = (i >> 11) & 0x1F;
    return op == 0x1C || op == 0x1F ? FLOAT_SIMD : SIMD_OTHER;
}

/* Three same extra: SQRDMLAH/SQRDMLSH 000x, SDOT/UDOT 0010 multiply; FCMLA 10xx, FCADD 11x0 are FP. */
static int three_same_extra(uint32_t i)
{
    uint32_t op = (i >> 11) & 0xF;
    if (op <= 0x2)
        return INT_SIMD_MAC;
    return op >= 0x8 ? FLOAT_SIMD : SIMD_OTHER;
}

static int simd_fp(uint32_t i)
{
    uint32_t n = i & ~0x50000000u;  /* bits 30 (Q / scalar) and 28 (vector 0, scalar 1) cleared */
    if ((i & 0x50000000u) == 0x10000000u)
        return FLOAT_SIMD;  /* op0 = x0x1: scalar floating point (FADD s, FMADD, FCVT, FMOV, SCVTF, ...) */
    if (i & 0x80000000u)
        return SIMD_OTHER;  /* op0 = 1xx0: cryptographic extensions */
    if ((n & 0x8F200400u) == 0x0E200400u)
        return three_same(i);
    if ((n & 0x8F200C00u) == 0x0E200000u)
        return three_different(i);
    if ((n & 0x8F3E0C00u) == 0x0E200800u)
        return two_reg_misc(i);
    if ((n & 0x8F3E0C00u) == 0x0E300800u)
        return across_lanes(i);
    if ((n & 0x8F000400u) == 0x0F000000u)
        return by_element(i);
    if ((n & 0x8F800400u) == 0x0F000400u && ((i >> 19) & 0xF) != 0)
        return shift_by_immediate(i);
    if ((n & 0x8F60C400u) == 0x0E400400u || (n & 0x8F7E0C00u) == 0x0E780800u)
        return FLOAT_SIMD;  /* half-precision three same, two-register misc */
    if ((n & 0x8F208400u) == 0x0E008400u)
        return three_same_extra(i);
    return SIMD_OTHER;  /* copy (DUP, INS, UMOV), permute, extract, table, modified immediate (MOVI) */
}

/* The class of one A64 instruction word. */
int edgekiln_insn_class(uint32_t i)
{
    if ((i & 0x0A000000u) == 0x08000000u)
        return LOAD_STORE;  /* op0 = x1x0 */
    if ((i & 0x0E000000u) == 0x0E000000u)
        return simd_fp(i);  /* op0 = x111 */
    if (is_branch(i))
        return BRANCH;
    return OTHER;
}

#ifndef EDGEKILN_CLASSIFY_ONLY
#include <pthread.h>

/* ---- The QEMU plugin API this file uses, declared from QEMU 7.2's documented include/qemu/qemu-plugin.h
 * (API version 1). Only what is called here; the opaque handles stay opaque. ---- */
typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;  /* read nothing from it */
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_syscall_cb_t)(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num,
                                              uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5,
                                              uint64_t a6, uint64_t a7, uint64_t a8);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op, void *ptr,
                                              uint64_t imm);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_syscall_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
void qemu_plugin_outs(const char *string);

#define EXPORT __attribute__((visibility("default")))
EXPORT int qemu_plugin_version = 1;

/* One translated block: where it starts, how often it ran (an inline add, no callback), and how many
 * instructions of each class it holds. A block translated twice gets two records; the reader sums them. */
struct block {
    uint64_t vaddr;
    uint64_t execs;
    uint64_t at_start, at_end;  /* execs at the window's marks (0 for a block translated after one) */
    uint32_t counts[N_CLASSES];
    struct block *next;
};

static struct block *blocks;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char out_path[4096];

/* The window's marks: lseek(-1, MARK, 0) (aarch64 syscall 62). window: 0 no mark yet, 1 open, 2 closed. */
#define SYS_LSEEK 62
#define MARK_START 0xED6E0001u
#define MARK_END 0xED6E0002u
static int window;

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1, uint64_t a2,
                       uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8)
{
    (void)id, (void)vcpu, (void)a3, (void)a4, (void)a5, (void)a6, (void)a7, (void)a8;
    if (num != SYS_LSEEK || (uint32_t)a1 != 0xFFFFFFFFu || (a2 != MARK_START && a2 != MARK_END))
        return;
    pthread_mutex_lock(&lock);
    for (struct block *b = blocks; b != NULL; b = b->next) {
        if (a2 == MARK_START)
            b->at_start = b->execs;
        else
            b->at_end = b->execs;
    }
    window = a2 == MARK_START ? 1 : 2;
    pthread_mutex_unlock(&lock);
}

/* A block's executions in the window (the whole process when the guest marked none). */
static uint64_t counted(const struct block *b)
{
    return window == 2 ? b->at_end - b->at_start : b->execs;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    struct block *b = calloc(1, sizeof *b);
    size_t n = qemu_plugin_tb_n_insns(tb);
    (void)id;
    if (b == NULL)
        return;
    b->vaddr = qemu_plugin_tb_vaddr(tb);
    for (size_t k = 0; k < n; k++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, k);
        uint32_t word = 0;
        if (qemu_plugin_insn_size(insn) == 4)
            memcpy(&word, qemu_plugin_insn_data(insn), 4);  /* A64 words are little-endian, as the host */
        b->counts[edgekiln_insn_class(word)]++;
    }
    /* Not atomic: exact for one guest thread, which is how edgekiln runs the counted process. */
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->execs, 1);
    pthread_mutex_lock(&lock);
    b->next = blocks;
    blocks = b;
    pthread_mutex_unlock(&lock);
}

static void write_counts(qemu_plugin_id_t id, void *userdata)
{
    FILE *f = fopen(out_path, "w");
    const char *sep = "";
    (void)id, (void)userdata;
    if (f == NULL) {
        qemu_plugin_outs("edgekiln insn_classes: cannot write the output file\n");
        return;
    }
    fprintf(f, "{\"plugin\": \"edgekiln-insn-classes/2\", \"window\": %s, \"classes\": [",
            window == 2 ? "true" : "false");
    for (int c = 0; c < N_CLASSES; c++)
        fprintf(f, "%s\"%s\"", c ? ", " : "", class_names[c]);
    fprintf(f, "],\n\"blocks\": [");  /* [start address, executions, count per class...] */
    for (struct block *b = blocks; b != NULL; b = b->next) {
        if (counted(b) == 0)
            continue;
        fprintf(f, "%s\n[%llu, %llu", sep, (unsigned long long)b->vaddr, (unsigned long long)counted(b));
        for (int c = 0; c < N_CLASSES; c++)
            fprintf(f, ", %u", b->counts[c]);
        fputc(']', f);
        sep = ",";
    }
    fprintf(f, "]}\n");
    fclose(f);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    (void)info;
    for (int k = 0; k < argc; k++)
        if (strncmp(argv[k], "out=", 4) == 0)
            snprintf(out_path, sizeof out_path, "%s", argv[k] + 4);
    if (out_path[0] == '\0') {
        qemu_plugin_outs("edgekiln insn_classes: pass out=FILE\n");
        return 1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, write_counts, NULL);
    return 0;
}
#endif
