/* demux.c - the replay thread demultiplexer.
 *
 * In replay exactly one Python thread runs at a time: the one holding the
 * baton.  The baton moves only at boundary events, to the thread that owns the
 * next record of the trace, so every replay interleaves the program's threads
 * the same way.  A thread that wants to cross the boundary while the next
 * record belongs to another thread hands the baton over and sleeps (without
 * the GIL) until it comes back.
 *
 * Threads are known by their trace numbers.  A thread is live from the moment
 * its parent starts it (so the baton can be handed to it before it runs) until
 * its last event.  Handing the baton to a thread that is not live can never
 * end: that is reported at once.  A live thread that does not come for the
 * baton within RT_TURN_TIMEOUT_S, while nothing else happens, is reported too:
 * replay never hangs.
 */
#include "retrace.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static uint64_t g_baton;        /* the thread allowed to run */
static uint64_t g_progress;     /* events consumed: proof that someone runs */
static int g_aborted;           /* the replay diverged: nobody waits for a turn any more */
static uint64_t *g_live;        /* live thread numbers, unordered */
static size_t g_nlive, g_caplive;

static int
is_live(uint64_t tid)
{
    for (size_t i = 0; i < g_nlive; i++)
        if (g_live[i] == tid)
            return 1;
    return 0;
}

void
rt_demux_start(void)
{
    pthread_mutex_lock(&g_mu);
    g_baton = 0;
    g_progress = 0;
    g_nlive = 0;
    g_aborted = 0;
    pthread_mutex_unlock(&g_mu);
    rt_demux_add(0);
}

int
rt_demux_add(uint64_t tid)
{
    int rc = 0;
    pthread_mutex_lock(&g_mu);
    if (g_nlive == g_caplive) {
        size_t cap = g_caplive ? 2 * g_caplive : 16;
        uint64_t *grown = realloc(g_live, cap * sizeof *grown);
        if (grown) {
            g_live = grown;
            g_caplive = cap;
        }
    }
    if (g_nlive < g_caplive)
        g_live[g_nlive++] = tid;
    else
        rc = -1;
    pthread_mutex_unlock(&g_mu);
    return rc;
}

void
rt_demux_remove(uint64_t tid, uint64_t next)
{
    pthread_mutex_lock(&g_mu);
    for (size_t i = 0; i < g_nlive; i++)
        if (g_live[i] == tid) {
            g_live[i] = g_live[--g_nlive];
            break;
        }
    if (g_baton == tid) {
        g_baton = next;
        pthread_cond_broadcast(&g_cv);
    }
    pthread_mutex_unlock(&g_mu);
}

void
rt_demux_progress(void)
{
    pthread_mutex_lock(&g_mu);
    g_progress++;
    pthread_mutex_unlock(&g_mu);
}

void
rt_demux_abort(void)
{
    pthread_mutex_lock(&g_mu);
    g_aborted = 1;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

int
rt_demux_turn(uint64_t me, uint64_t owner, char *err, size_t errlen)
{
    int rc = 0;
    pthread_mutex_lock(&g_mu);
    if (g_baton == me) {
        if (owner == me) {
            pthread_mutex_unlock(&g_mu);
            return 1;
        }
        g_baton = owner;
        pthread_cond_broadcast(&g_cv);
    }
    pthread_mutex_unlock(&g_mu);

    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&g_mu);
    uint64_t seen = g_progress;
    time_t idle_since = time(NULL);
    while (g_baton != me) {
        if (g_aborted) {
            snprintf(err, errlen, "replay already diverged");
            rc = -1;
            break;
        }
        if (!is_live(g_baton)) {
            snprintf(err, errlen,
                     "thread %llu waits for its turn, but the recording continues with "
                     "thread %llu, which has ended or never started in this replay",
                     (unsigned long long)me, (unsigned long long)g_baton);
            rc = -1;
            break;
        }
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_nsec += 100 * 1000 * 1000;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g_cv, &g_mu, &deadline);
        if (g_progress != seen) {
            seen = g_progress;
            idle_since = time(NULL);
        }
        else if (time(NULL) - idle_since >= RT_TURN_TIMEOUT_S) {
            snprintf(err, errlen,
                     "thread %llu waited %d s for its turn: the recording continues with "
                     "thread %llu, which has not reached its next boundary call (it runs "
                     "or blocks outside what Retrace intercepts)",
                     (unsigned long long)me, RT_TURN_TIMEOUT_S, (unsigned long long)g_baton);
            rc = -1;
            break;
        }
    }
    pthread_mutex_unlock(&g_mu);
    Py_END_ALLOW_THREADS
    return rc;
}
