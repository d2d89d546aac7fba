/*
 * exitstatus.c: the exit status of a command run under `perf stat`, which perf 6.1 can lose.
 *
 * Why: perf stat 6.1 installs a SIGCHLD handler that sets its child's pid to -1, and waits for
 * the child only "if (child_pid != -1)". A child that exits before perf gets to that test (a
 * program that fails at once, about 1 run in 8 on our 2-core VM) is never waited for: perf
 * exits 0 and its wall-clock time is cut to a microsecond (the "CPUs utilized" figure of
 * task-clock reads 500 instead of 0.8). And perf stat exits 0 whenever the child is killed by
 * a signal, every time. perf record waits for its child and passes its status on.
 *
 * Two modes of one small program, built once into the profilers' cache:
 *
 *   llmperf_exitstatus write FILE -- COMMAND [ARG...]
 *       what perf stat runs: spawns COMMAND (with a PATH search, as perf's execvp), waits for
 *       it, writes its status to FILE ("exit N", "signal N", or "spawn-error ERRNO" when it
 *       could not be started) and exits as it did (dies of the same signal, without a core).
 *       FILE is written before this process exits, so it is there by the time perf knows that
 *       its child is gone, whether or not perf waits for it.
 *
 *   llmperf_exitstatus read FILE -- PERF [ARG...]
 *       what runs perf stat: spawns it, waits for it, and exits as the command did when FILE
 *       says the command failed, else as perf did; a caller that looks only at the exit status
 *       (the llama2.c runner, for --llmperf-profile-inline) then sees the command's failure.
 *
 * The cost inside perf's counts (perf stat counts the whole process tree from the exec of the
 * write mode on): the exec of this static binary, one posix_spawn (glibc's clone(CLONE_VM |
 * CLONE_VFORK): no page of this process is copied), a wait and a few bytes written. It is the
 * same on every run; see PerfStat in perf.py for what it adds to the counts.
 *
 * Signals: SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 are passed on to the command (a kill of this
 * process reaches the command, which then ends as it would have, and its status is written);
 * SIGINT and SIGQUIT, which a terminal sends to the whole process group, the command included,
 * are only waited out. A signal that was ignored stays ignored, in this process and in the
 * command. No stdio: the program stays small.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static volatile pid_t child_pid = 0;

static void pass_on(int sig)
{
    if (child_pid > 0)
        kill(child_pid, sig);
}

static void wait_out(int sig)
{
    (void)sig;
}

/* one line on stderr, of up to four parts; its failure changes nothing */
static void say(const char *a, const char *b, const char *c, const char *d)
{
    const char *parts[] = {"llmperf_exitstatus: ", a, b, c, d, "\n"};
    for (unsigned i = 0; i < sizeof parts / sizeof parts[0]; i++)
        if (parts[i] && write(2, parts[i], strlen(parts[i])) < 0)
            return;
}

/* writes value (0 or more) in decimal just before end; returns its first character */
static char *decimal(unsigned value, char *end)
{
    char *p = end;
    do {
        *--p = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    return p;
}

static void setup_signals(sigset_t *before)
{
    static const int passed[] = {SIGTERM, SIGHUP, SIGUSR1, SIGUSR2};
    static const int waited[] = {SIGINT, SIGQUIT};
    sigset_t all;
    sigemptyset(&all);
    for (int pass = 0; pass < 2; pass++) {
        const int *list = pass ? waited : passed;
        int n = pass ? 2 : 4;
        for (int i = 0; i < n; i++) {
            struct sigaction old, sa;
            if (sigaction(list[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN)
                continue; /* ignored: left ignored (the command inherits that) */
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = pass ? wait_out : pass_on;
            sigemptyset(&sa.sa_mask);
            sa.sa_flags = SA_RESTART;
            sigaction(list[i], &sa, NULL);
            sigaddset(&all, list[i]);
        }
    }
    /* blocked until the child's pid is known, so that none is lost in between */
    sigprocmask(SIG_BLOCK, &all, before);
}

/* spawns argv with the signal mask of before (handled signals are reset by exec); 0 or errno */
static int spawn(char **argv, const sigset_t *before)
{
    posix_spawnattr_t attr;
    pid_t pid;
    int err = posix_spawnattr_init(&attr);
    if (err == 0)
        err = posix_spawnattr_setsigmask(&attr, before);
    if (err == 0)
        err = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    if (err == 0)
        err = posix_spawnp(&pid, argv[0], NULL, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    if (err == 0)
        child_pid = pid;
    sigprocmask(SIG_SETMASK, before, NULL);
    return err;
}

static int wait_child(void)
{
    int status;
    while (waitpid(child_pid, &status, 0) < 0) {
        if (errno != EINTR) {
            say("waitpid: ", strerror(errno), "", "");
            return -1;
        }
    }
    return status;
}

/* exits as status says: with its code, or of its signal (no core of this process) */
static void exit_as(int status)
{
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        struct rlimit none = {0, 0};
        sigset_t one;
        setrlimit(RLIMIT_CORE, &none);
        signal(sig, SIG_DFL);
        sigemptyset(&one);
        sigaddset(&one, sig);
        sigprocmask(SIG_UNBLOCK, &one, NULL);
        raise(sig);
        _exit(128 + sig); /* a signal that does not kill (none of the usual ones) */
    }
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

/* writes "WORD VALUE\n" to path in one write(); 0, or -1 with a message on stderr */
static int write_status(const char *path, const char *word, unsigned value)
{
    char buf[48], *end = buf + sizeof buf - 1, *text;
    size_t word_len = strlen(word);
    *end = '\n';
    text = decimal(value, end) - 1;
    *text = ' ';
    text -= word_len;
    memcpy(text, word, word_len);
    size_t len = (size_t)(end + 1 - text);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        say("cannot write the status file ", path, ": ", strerror(errno));
        return -1;
    }
    ssize_t n = write(fd, text, len);
    int saved = n < 0 ? errno : EIO;
    if (close(fd) != 0 || n != (ssize_t)len) {
        say("cannot write the status file ", path, ": ", strerror(saved));
        return -1;
    }
    return 0;
}

/* the status FILE records, as a wait status, or -1 when it holds none (missing, or unreadable) */
static int read_status(const char *path)
{
    char buf[64];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    int value = 0, digits = 0;
    const char *p = NULL;
    int is_signal = 0;
    if (strncmp(buf, "exit ", 5) == 0)
        p = buf + 5;
    else if (strncmp(buf, "signal ", 7) == 0)
        p = buf + 7, is_signal = 1;
    else if (strncmp(buf, "spawn-error ", 12) == 0)
        return 127 << 8; /* the command did not start: as a shell says it */
    if (p == NULL)
        return -1;
    for (; *p >= '0' && *p <= '9' && digits < 4; p++, digits++)
        value = value * 10 + (*p - '0');
    if (digits == 0 || (*p != '\n' && *p != '\0'))
        return -1;
    if (is_signal)
        return value > 0 && value < 128 ? value : -1; /* a wait status of a signal death */
    return (value & 0xff) << 8;
}

static int usage(void)
{
    say("usage: llmperf_exitstatus write|read FILE -- COMMAND [ARG...]", "", "", "");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 5 || strcmp(argv[3], "--") != 0)
        return usage();
    int writing = strcmp(argv[1], "write") == 0;
    if (!writing && strcmp(argv[1], "read") != 0)
        return usage();
    const char *path = argv[2];
    char **command = argv + 4;
    sigset_t before;

    setup_signals(&before);
    int err = spawn(command, &before);
    if (err != 0) {
        say("cannot run ", command[0], ": ", strerror(err));
        if (writing && write_status(path, "spawn-error", err) != 0)
            return 126;
        return 127;
    }
    int status = wait_child();
    if (status < 0)
        return 126;
    if (writing) {
        if (WIFSIGNALED(status))
            err = write_status(path, "signal", WTERMSIG(status));
        else
            err = write_status(path, "exit", WIFEXITED(status) ? WEXITSTATUS(status) : 1);
        if (err != 0)
            return 126; /* no status file: the profiler reports that, whatever this code */
        exit_as(status);
    }
    /* read: perf's own death first; then the command's failure; then perf's code */
    if (WIFSIGNALED(status))
        exit_as(status);
    int recorded = read_status(path);
    if (recorded >= 0 && recorded != 0)
        exit_as(recorded);
    exit_as(status);
    return 1;
}
