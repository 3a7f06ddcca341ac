/* cluster_none.c — the cluster layer of a build without Redis support (sidecar/cluster.c absent):
 * cluster_new() refuses, so the daemon runs in embedded mode only.  Every other entry point is
 * unreachable without a cluster object and does nothing. */
#include <stdio.h>

#include "cluster.h"

cluster *cluster_new(struct ev_loop *loop, const config *cfg, struct hub *h, char *errbuf,
                     size_t errlen)
{
    (void)loop;
    (void)cfg;
    (void)h;
    snprintf(errbuf, errlen, "--redis: this build has no Redis support");
    return NULL;
}

void cluster_free(cluster *cl)
{
    (void)cl;
}

int cluster_available(const cluster *cl)
{
    (void)cl;
    return 0;
}

cluster_circuit cluster_circuit_state(const cluster *cl)
{
    (void)cl;
    return CLUSTER_OPEN;
}

int cluster_persist(cluster *cl, const char *agent_id, const char *project_id, uint32_t type,
                    const char *json_prefix, size_t len, cluster_persist_cb cb, void *ud)
{
    (void)cl, (void)agent_id, (void)project_id, (void)type, (void)json_prefix, (void)len;
    (void)cb, (void)ud;
    return -1;
}

void cluster_publish(cluster *cl, uint32_t type, const char *json, size_t len)
{
    (void)cl, (void)type, (void)json, (void)len;
}

void cluster_put_agent(cluster *cl, const char *agent_id, const char *json, size_t len)
{
    (void)cl, (void)agent_id, (void)json, (void)len;
}

int cluster_replay(cluster *cl, uint64_t after_seq, const char *epoch,
                   cluster_replay_event_cb on_event, cluster_replay_done_cb on_done, void *ud)
{
    (void)cl, (void)after_seq, (void)epoch, (void)on_event, (void)on_done, (void)ud;
    return -1;
}

void cluster_replay_cancel(cluster *cl, void *ud)
{
    (void)cl, (void)ud;
}

void cluster_conn_open(cluster *cl, const struct conn *c)
{
    (void)cl, (void)c;
}

void cluster_conn_heartbeat(cluster *cl, const struct conn *c)
{
    (void)cl, (void)c;
}

void cluster_conn_close(cluster *cl, const struct conn *c)
{
    (void)cl, (void)c;
}

void cluster_set_draining(cluster *cl)
{
    (void)cl;
}

int cluster_admit(cluster *cl, const char *ip, const char *user_fp, const char *conn_id,
                  long per_ip_per_min, long per_user, cluster_admit_cb cb, void *ud)
{
    (void)cl, (void)ip, (void)user_fp, (void)conn_id, (void)per_ip_per_min, (void)per_user;
    (void)cb, (void)ud;
    return -1;
}

void cluster_admit_cancel(cluster *cl, void *ud)
{
    (void)cl, (void)ud;
}

void cluster_release_user(cluster *cl, const char *user_fp, const char *conn_id)
{
    (void)cl, (void)user_fp, (void)conn_id;
}

void cluster_render_metrics(buf *b, void *cl)
{
    (void)b, (void)cl;
}
