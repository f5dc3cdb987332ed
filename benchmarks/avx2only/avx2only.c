/* Make a process see an AVX2-only x86 CPU: every library's CPU dispatch (oneDNN in torch and OpenVINO, ONNX Runtime's
 * MLAS, ATen) then picks the kernels it would pick on a CPU without AVX-512, AVX512-BF16 or AMX.
 *
 * ONEDNN_MAX_CPU_ISA / ATEN_CPU_CAPABILITY cap only oneDNN and ATen; ONNX Runtime reads CPUID itself and kept its
 * AVX-512 kernels under them. This library, loaded with LD_PRELOAD, turns on Linux's CPUID faulting
 * (arch_prctl(ARCH_SET_CPUID, 0), on CPUs and hypervisors that offer it: the "cpuid_fault" flag of /proc/cpuinfo)
 * before any thread exists, so that every CPUID instruction of the process and of the threads and children it
 * forks traps; the SIGSEGV handler runs the real CPUID, clears the AVX-512, AVX512-BF16/FP16, AVX-VNNI and AMX
 * feature bits, and returns past the instruction. The operating system still saves the AVX-512 registers (XGETBV
 * is not masked); no library uses them once CPUID says they are absent.
 *
 *   gcc -O2 -shared -fPIC -o avx2only.so avx2only.c
 *   LD_PRELOAD=$PWD/avx2only.so python -c "import torch; print(torch.backends.cpu.get_cpu_capability())"  # AVX2
 *
 * A program's own SIGSEGV handler (Python's faulthandler, gcc's crash report when torch.compile runs the compiler,
 * which inherits LD_PRELOAD) would replace this one and crash at its next CPUID, so the library also stands in for
 * sigaction() and signal() on SIGSEGV: it keeps its handler installed, remembers the program's, and passes every
 * fault that is not a CPUID to it.
 *
 * Limits: what runs before the library's constructor (the dynamic loader, glibc's own string-function dispatch)
 * saw the real CPU.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

static void real_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

static void mask(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    if (leaf == 7 && sub == 0) {
        /* EBX: AVX512F 16, DQ 17, IFMA 21, PF 26, ER 27, CD 28, BW 30, VL 31 */
        r[1] &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31));
        /* ECX: VBMI 1, VBMI2 6, VNNI 11, BITALG 12, VPOPCNTDQ 14 */
        r[2] &= ~((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14));
        /* EDX: 4VNNIW 2, 4FMAPS 3, VP2INTERSECT 8, AMX-BF16 22, AVX512-FP16 23, AMX-TILE 24, AMX-INT8 25 */
        r[3] &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) | (1u << 25));
    } else if (leaf == 7 && sub == 1) {
        /* EAX: AVX-VNNI 4, AVX512-BF16 5, AMX-FP16 21; EDX: AVX-VNNI-INT8 4, AVX10 19 */
        r[0] &= ~((1u << 4) | (1u << 5) | (1u << 21));
        r[3] &= ~((1u << 4) | (1u << 19));
    } else if (leaf == 0xD && sub == 0) {
        /* XSAVE components the CPU offers: without opmask/ZMM (5-7) and AMX tile state (17, 18) */
        r[0] &= ~((1u << 5) | (1u << 6) | (1u << 7) | (1u << 17) | (1u << 18));
    } else if (leaf == 0x1D || leaf == 0x1E || leaf == 0x24) {
        r[0] = r[1] = r[2] = r[3] = 0; /* AMX tile and AVX10 information */
    }
}

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);
static struct sigaction program_handler; /* the program's own SIGSEGV handler (SIG_DFL until it sets one) */

static sigaction_fn real_sigaction(void) {
    static sigaction_fn real;
    if (!real) real = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
    return real;
}

static void on_sigsegv(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = (ucontext_t *)context;
    greg_t *g = uc->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)g[REG_RIP];
    if (ip[0] != 0x0F || ip[1] != 0xA2) { /* a real fault: the program's handler, or the default (death) */
        if (program_handler.sa_flags & SA_SIGINFO) {
            program_handler.sa_sigaction(sig, info, context);
        } else if (program_handler.sa_handler != SIG_DFL && program_handler.sa_handler != SIG_IGN) {
            program_handler.sa_handler(sig);
        } else {
            struct sigaction dfl;
            memset(&dfl, 0, sizeof dfl);
            dfl.sa_handler = SIG_DFL;
            real_sigaction()(SIGSEGV, &dfl, NULL); /* the instruction faults again and kills the process */
        }
        return;
    }
    uint32_t leaf = (uint32_t)g[REG_RAX], sub = (uint32_t)g[REG_RCX], r[4];
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
    real_cpuid(leaf, sub, r);
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
    mask(leaf, sub, r);
    g[REG_RAX] = r[0];
    g[REG_RBX] = r[1];
    g[REG_RCX] = r[2];
    g[REG_RDX] = r[3];
    g[REG_RIP] += 2;
}

/* The program's sigaction()/signal() on SIGSEGV set the handler on_sigsegv passes real faults to. */
int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    if (sig != SIGSEGV) return real_sigaction()(sig, act, old);
    if (old) *old = program_handler;
    if (act) program_handler = *act;
    return 0;
}

sighandler_t signal(int sig, sighandler_t handler) {
    if (sig != SIGSEGV) {
        struct sigaction act, old;
        memset(&act, 0, sizeof act);
        act.sa_handler = handler;
        act.sa_flags = SA_RESTART;
        sigemptyset(&act.sa_mask);
        return real_sigaction()(sig, &act, &old) == 0 ? old.sa_handler : SIG_ERR;
    }
    sighandler_t previous = (program_handler.sa_flags & SA_SIGINFO) ? (sighandler_t)program_handler.sa_sigaction
                                                                    : program_handler.sa_handler;
    memset(&program_handler, 0, sizeof program_handler);
    program_handler.sa_handler = handler;
    return previous;
}

__attribute__((constructor)) static void avx2only(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigsegv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    program_handler.sa_handler = SIG_DFL;
    if (real_sigaction()(SIGSEGV, &sa, NULL) != 0 || syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
        fprintf(stderr, "avx2only: this kernel or CPU offers no CPUID faulting (no cpuid_fault flag): not masked\n");
        exit(3);
    }
}
