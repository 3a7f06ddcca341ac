#include "metrics.h"

metrics g_metrics;

/* Upper bounds of the latency histogram, seconds. */
static const double latency_bounds[METRICS_LATENCY_BUCKETS] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025,   0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0};

static const char *const close_names[] = {
#define METRICS_NAME_(name, label) label,
    METRICS_CLOSE_REASONS(METRICS_NAME_)
#undef METRICS_NAME_
};
static const char *const reject_names[] = {
#define METRICS_NAME_(name, label) label,
    METRICS_REJECT_REASONS(METRICS_NAME_)
#undef METRICS_NAME_
};
static const char *const kind_names[] = MSG_KIND_NAMES;

const char *metrics_close_reason_name(close_reason r)
{
    return (unsigned)r < CLOSE_REASON_COUNT ? close_names[r] : "unknown";
}

const char *metrics_reject_reason_name(reject_reason r)
{
    return (unsigned)r < REJECT_REASON_COUNT ? reject_names[r] : "unknown";
}

void metrics_observe_latency(uint64_t ns)
{
    double s = (double)ns / 1e9;
    size_t i = 0;
    while (i < METRICS_LATENCY_BUCKETS && s > latency_bounds[i])
        i++;
    g_metrics.latency_buckets[i]++;
    g_metrics.latency_sum += s;
    g_metrics.latency_count++;
}

static void header(buf *b, const char *name, const char *type, const char *help)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void metrics_render(buf *b, metrics_extra_fn extra, void *ud)
{
    const metrics *m = &g_metrics;
    header(b, "ws_updates_clients", "gauge", "Open WebSocket connections.");
    buf_printf(b, "ws_updates_clients %llu\n", (unsigned long long)m->clients);
    header(b, "ws_updates_connections_total", "counter", "WebSocket connections accepted.");
    buf_printf(b, "ws_updates_connections_total %llu\n", (unsigned long long)m->connections_total);
    header(b, "ws_updates_disconnections_total", "counter", "WebSocket connections closed, by reason.");
    for (int i = 0; i < CLOSE_REASON_COUNT; i++)
        buf_printf(b, "ws_updates_disconnections_total{reason=\"%s\"} %llu\n", close_names[i],
                   (unsigned long long)m->disconnections[i]);
    header(b, "ringside_http_rejections_total", "counter", "HTTP requests and upgrades refused, by reason.");
    for (int i = 0; i < REJECT_REASON_COUNT; i++)
        buf_printf(b, "ringside_http_rejections_total{reason=\"%s\"} %llu\n", reject_names[i],
                   (unsigned long long)m->rejections[i]);
    header(b, "ws_updates_messages_sent_total", "counter", "Messages sent to clients, by type.");
    for (int i = 0; i < MSG_KIND_COUNT; i++)
        buf_printf(b, "ws_updates_messages_sent_total{type=\"%s\"} %llu\n", kind_names[i],
                   (unsigned long long)m->sent[i]);
    header(b, "ws_updates_messages_dropped_total", "counter",
           "Messages dropped for clients that could not keep up, by type.");
    for (int i = 0; i < MSG_KIND_COUNT; i++)
        buf_printf(b, "ws_updates_messages_dropped_total{type=\"%s\"} %llu\n", kind_names[i],
                   (unsigned long long)m->dropped[i]);
    header(b, "ws_updates_messages_coalesced_total", "counter",
           "Queued progress messages replaced by a newer value.");
    buf_printf(b, "ws_updates_messages_coalesced_total %llu\n", (unsigned long long)m->coalesced);
    header(b, "ringside_events_total", "counter", "Events accepted into the hub, by type.");
    for (int i = 0; i < MSG_KIND_COUNT; i++)
        buf_printf(b, "ringside_events_total{type=\"%s\"} %llu\n", kind_names[i],
                   (unsigned long long)m->events_in[i]);
    header(b, "ringside_rate_limited_total", "counter",
           "Events refused by the global rate limit (--global-msg-rate).");
    buf_printf(b, "ringside_rate_limited_total %llu\n", (unsigned long long)m->rate_limited);
    header(b, "ws_updates_bytes_sent_total", "counter", "Bytes written to client sockets.");
    buf_printf(b, "ws_updates_bytes_sent_total %llu\n", (unsigned long long)m->bytes_sent);
    header(b, "ws_updates_bytes_received_total", "counter", "Bytes read from client sockets.");
    buf_printf(b, "ws_updates_bytes_received_total %llu\n", (unsigned long long)m->bytes_received);
    header(b, "ringside_rings_active", "gauge", "Agent rings being read.");
    buf_printf(b, "ringside_rings_active %llu\n", (unsigned long long)m->rings_active);
    header(b, "ringside_rings_rejected_total", "counter",
           "Ring files refused (bad magic, version or geometry).");
    buf_printf(b, "ringside_rings_rejected_total %llu\n", (unsigned long long)m->rings_rejected);
    header(b, "ringside_rings_open_retried_total", "counter",
           "Ring opens that failed for want of file descriptors or memory (retried next scan).");
    buf_printf(b, "ringside_rings_open_retried_total %llu\n",
               (unsigned long long)m->rings_open_retried);
    header(b, "ringside_rings_over_limit_total", "counter",
           "Ring attaches deferred because --max-rings rings were being read.");
    buf_printf(b, "ringside_rings_over_limit_total %llu\n", (unsigned long long)m->rings_over_limit);
    header(b, "ringside_tasks_refused_total", "counter",
           "Task events dropped because their agent had --max-tasks-per-agent running tasks.");
    buf_printf(b, "ringside_tasks_refused_total %llu\n", (unsigned long long)m->tasks_refused);
    header(b, "ringside_tasks_expired_total", "counter",
           "Running tasks the sidecar ended, by reason (idle: --task-idle-timeout; closed: their "
           "agent closed cleanly --task-close-grace ago).");
    buf_printf(b, "ringside_tasks_expired_total{reason=\"idle\"} %llu\n",
               (unsigned long long)m->tasks_expired_idle);
    buf_printf(b, "ringside_tasks_expired_total{reason=\"closed\"} %llu\n",
               (unsigned long long)m->tasks_ended_after_close);
    header(b, "ringside_rings_quarantined_total", "counter", "Rings dropped for corrupt content.");
    buf_printf(b, "ringside_rings_quarantined_total %llu\n", (unsigned long long)m->rings_quarantined);
    header(b, "ringside_agent_deaths_total", "counter", "Agents that ended without closing cleanly.");
    buf_printf(b, "ringside_agent_deaths_total %llu\n", (unsigned long long)m->agent_deaths);
    header(b, "ringside_hibernations_total", "counter",
           "Idle connections whose WebSocket buffers were released until their next byte.");
    buf_printf(b, "ringside_hibernations_total %llu\n", (unsigned long long)m->hibernations);
    header(b, "ringside_auth_failures_total", "counter", "Tokens refused (handshake or refresh).");
    buf_printf(b, "ringside_auth_failures_total %llu\n", (unsigned long long)m->auth_failures);
    static const char *const tenancy_names[TENANCY_REFUSAL_COUNT] = {
        "ring_foreign_project", "origin_project_not_announced", "relay_not_from_owner",
        "rights_revoked"};
    header(b, "ringside_tenancy_refusals_total", "counter",
           "Data kept from crossing a tenant boundary, by reason.");
    for (int i = 0; i < TENANCY_REFUSAL_COUNT; i++)
        buf_printf(b, "ringside_tenancy_refusals_total{reason=\"%s\"} %llu\n", tenancy_names[i],
                   (unsigned long long)m->tenancy_refusals[i]);
    header(b, "ringside_agent_status_over_budget_total", "counter",
           "Times an agent went over --agent-status-rate (its latest status waited).");
    buf_printf(b, "ringside_agent_status_over_budget_total %llu\n",
               (unsigned long long)m->agent_status_over_budget);
    header(b, "ringside_agent_status_coalesced_total", "counter",
           "Statuses over --agent-status-rate replaced by a newer one before they went out.");
    buf_printf(b, "ringside_agent_status_coalesced_total %llu\n",
               (unsigned long long)m->agent_status_coalesced);
    header(b, "ws_updates_publish_to_send_seconds", "histogram",
           "Time from the agent's publish (ts_ns) to the write to a client socket.");
    uint64_t cum = 0;
    for (int i = 0; i < METRICS_LATENCY_BUCKETS; i++) {
        cum += m->latency_buckets[i];
        buf_printf(b, "ws_updates_publish_to_send_seconds_bucket{le=\"%g\"} %llu\n",
                   latency_bounds[i], (unsigned long long)cum);
    }
    cum += m->latency_buckets[METRICS_LATENCY_BUCKETS];
    buf_printf(b, "ws_updates_publish_to_send_seconds_bucket{le=\"+Inf\"} %llu\n",
               (unsigned long long)cum);
    buf_printf(b, "ws_updates_publish_to_send_seconds_sum %.9f\n", m->latency_sum);
    buf_printf(b, "ws_updates_publish_to_send_seconds_count %llu\n",
               (unsigned long long)m->latency_count);
    if (extra != NULL)
        extra(b, ud);
}
