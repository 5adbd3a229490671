/* Preloaded into sessiond under valgrind 3.19, which writes into the signal mask that sigsuspend is given
 * (to keep its own signal unblocked). libdispatch passes a mask in read-only memory when an async main
 * parks the main thread, so valgrind faults on it. This sigsuspend hands the kernel a copy instead. */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

int sigsuspend(const sigset_t *mask) {
    sigset_t copy = *mask;
    return (int)syscall(SYS_rt_sigsuspend, &copy, _NSIG / 8);
}
