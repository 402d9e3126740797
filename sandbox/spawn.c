/* The sandbox's exec helper: what a job does between the fork server and the program, in C.
 *
 * The fork server starts it with posix_spawn (a vfork: no copy of the server's page tables), with
 * the job's pipes on fds 0-2 and a status pipe on fd 3. It confines itself exactly as a forked
 * Python job does (_server.py, enter_job) and then execs the program:
 *
 *   spawn CPU_S FSIZE NOFILE NPROC AS_BYTES UID OOM_ADJ SECCOMP_HEX CWD -- PROGRAM ARG...
 *
 * A number of 0 (or UID -1, OOM_ADJ/SECCOMP_HEX "-") skips that step. SECCOMP_HEX is the
 * filter's struct sock_filter array in hex. A failed step writes "setup: ..." to fd 3 and exits
 * 127; on success fd 3 closes at exec, so the server hears nothing.
 *
 * Built by the sandbox itself (sandbox/spawner.py) with `gcc -O2 -static`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char **environ;

static void fail(const char *step) {
    dprintf(3, "setup: %s: %s", step, strerror(errno));
    _exit(127);
}

static void limit(int resource, unsigned long long soft, unsigned long long hard, const char *step) {
    struct rlimit r = {soft, hard};
    if (setrlimit(resource, &r) != 0) fail(step);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

int main(int argc, char **argv) {
    if (argc < 12 || strcmp(argv[10], "--") != 0) {
        errno = EINVAL;
        fail("usage: spawn CPU_S FSIZE NOFILE NPROC AS_BYTES UID OOM_ADJ SECCOMP_HEX CWD -- PROGRAM ARG...");
    }
    unsigned long long cpu = strtoull(argv[1], NULL, 10), fsize = strtoull(argv[2], NULL, 10);
    unsigned long long nofile = strtoull(argv[3], NULL, 10), nproc = strtoull(argv[4], NULL, 10);
    unsigned long long as = strtoull(argv[5], NULL, 10);
    long uid = strtol(argv[6], NULL, 10);
    const char *oom = argv[7], *seccomp = argv[8], *cwd = argv[9];

    if (fcntl(3, F_SETFD, FD_CLOEXEC) != 0) fail("status fd");
    syscall(SYS_close_range, 4U, ~0U, 0);  /* anything inherited by mistake */
    if (strcmp(oom, "-") != 0) {
        int fd = open("/proc/self/oom_score_adj", O_WRONLY);
        if (fd < 0 || write(fd, oom, strlen(oom)) < 0) fail("oom_score_adj");
        close(fd);
    }
    if (chdir(cwd) != 0) fail("chdir");
    if (cpu) limit(RLIMIT_CPU, cpu, cpu + 1, "RLIMIT_CPU");
    if (fsize) limit(RLIMIT_FSIZE, fsize, fsize, "RLIMIT_FSIZE");
    if (nofile) limit(RLIMIT_NOFILE, nofile, nofile, "RLIMIT_NOFILE");
    limit(RLIMIT_CORE, 0, 0, "RLIMIT_CORE");
    if (nproc) limit(RLIMIT_NPROC, nproc, nproc, "RLIMIT_NPROC");
    if (as) limit(RLIMIT_AS, as, as, "RLIMIT_AS");
    if (uid >= 0) {
        if (setgroups(0, NULL) != 0) fail("setgroups");
        if (setgid((gid_t)uid) != 0) fail("setgid");
        if (setuid((uid_t)uid) != 0) fail("setuid");
    }
    if (strcmp(seccomp, "-") != 0) {
        size_t n = strlen(seccomp) / 2;
        if (n == 0 || n % sizeof(struct sock_filter) != 0) {
            errno = EINVAL;
            fail("seccomp filter");
        }
        unsigned char *bytes = malloc(n);
        for (size_t i = 0; i < n; i++) {
            int hi = hexval(seccomp[2 * i]), lo = hexval(seccomp[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                errno = EINVAL;
                fail("seccomp filter");
            }
            bytes[i] = (unsigned char)(hi << 4 | lo);
        }
        struct sock_fprog prog = {(unsigned short)(n / sizeof(struct sock_filter)), (struct sock_filter *)bytes};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("no_new_privs");
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) fail("seccomp");
    }
    execve(argv[11], argv + 11, environ);
    fail(argv[11]);
}
