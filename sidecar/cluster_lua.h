/*
 * cluster_lua.h — the Redis Lua scripts of the cluster layer (see cluster.c and docs/cluster.md).
 *
 * Loaded with SCRIPT LOAD when the command connection becomes ready and run with EVALSHA (the
 * SHA-1 is computed locally); a NOSCRIPT reply (Redis restarted, SCRIPT FLUSH, failover) is
 * answered by one EVAL of the same text.  Every key a script touches is passed in KEYS and all
 * keys of one script share a hash tag, except the admission script (see its comment).  Time is
 * Redis's own (TIME), so instances with skewed clocks agree on windows and leases.
 */
#ifndef RINGSIDE_CLUSTER_LUA_H
#define RINGSIDE_CLUSTER_LUA_H

/*
 * persist — assigns (epoch, seq), stores and publishes one event, atomically.
 * KEYS: stream, seq counter, epoch, announced projects (hash instance → "*" or ",p1,p2,").
 * ARGV: 1 candidate epoch (random, used if a new one is needed), 2 highest seq this instance has
 *       seen, 3 the epoch of that seq, 4 JSON object without its closing brace, 5 origin instance,
 *       6 event type, 7 replay window (ms), 8 MAXLEN, 9 channel, 10 the event's project,
 *       11 the origin's announcement (used when Redis lost the stored one).
 * An event for a project its origin did not announce is refused before anything is written:
 * returns {"", 0, ""} (D2).
 * A new epoch starts (stream deleted, seq restarts at 1) when the epoch key is missing, when INCR
 * does not exceed the stream's last id (the counter was lost or rolled back) or when it does not
 * exceed what the caller already saw in the same epoch (failover to a lagging replica).
 * Entries: id "<seq>-0", fields e (final JSON), t (Redis time, ms), o (origin), y (type).  The
 * stream is capped by MAXLEN ~ and entries older than the window are trimmed by time, up to 16
 * per call (amortised: never fewer than are added).
 * Publishes "<origin>\n<type>\n<seq>\n<epoch>\n<json>" and returns {json, seq, epoch}.
 */
/* The origin's announced projects; when Redis lost them (restart, FLUSHALL), the announcement the
 * caller sends along (its --projects, as its heartbeat writes it) is stored again first. */
#define CLUSTER_LUA_ANNOUNCED(KEY, ORIGIN, PROJECT, ANNOUNCED)                                     \
    "local ann = redis.call('HGET', " KEY ", " ORIGIN ")\n"                                         \
    "if not ann then ann = " ANNOUNCED " redis.call('HSET', " KEY ", " ORIGIN ", ann) end\n"         \
    "if not ann or (ann ~= '*' and not string.find(ann, ',' .. " PROJECT " .. ',', 1, true)) then\n" \

#define CLUSTER_LUA_PERSIST                                                                        \
    CLUSTER_LUA_ANNOUNCED("KEYS[4]", "ARGV[5]", "ARGV[10]", "ARGV[11]")                                        \
    "  return {'', 0, ''}\n"                                                                       \
    "end\n"                                                                                        \
    "local epoch = redis.call('GET', KEYS[3])\n"                                                   \
    "local seq = nil\n"                                                                            \
    "if epoch then\n"                                                                              \
    "  seq = redis.call('INCR', KEYS[2])\n"                                                        \
    "  local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)\n"                      \
    "  if last[1] and tonumber(string.match(last[1][1], '^(%d+)')) >= seq then seq = nil end\n"   \
    "  if seq and epoch == ARGV[3] and seq <= tonumber(ARGV[2]) then seq = nil end\n"              \
    "end\n"                                                                                        \
    "if not seq then\n"                                                                            \
    "  epoch = ARGV[1]\n"                                                                          \
    "  redis.call('SET', KEYS[3], epoch)\n"                                                        \
    "  redis.call('DEL', KEYS[1])\n"                                                               \
    "  redis.call('SET', KEYS[2], 1)\n"                                                            \
    "  seq = 1\n"                                                                                  \
    "end\n"                                                                                        \
    "local t = redis.call('TIME')\n"                                                               \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"                      \
    "local sseq = string.format('%d', seq)\n"                                                      \
    "local sep = ','\n"                                                                            \
    "if string.sub(ARGV[4], -1) == '{' then sep = '' end\n"                                        \
    "local json = ARGV[4] .. sep .. '\"seq\":' .. sseq .. ',\"epoch\":\"' .. epoch .. '\"}'\n"     \
    "redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[8], sseq .. '-0', 'e', json, 't',\n"          \
    "           string.format('%d', now), 'o', ARGV[5], 'y', ARGV[6])\n"                           \
    "local cutoff = now - tonumber(ARGV[7])\n"                                                     \
    "local old = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 16)\n"                           \
    "local keep = nil\n"                                                                           \
    "for i = 1, #old do\n"                                                                         \
    "  local f = old[i][2]\n"                                                                      \
    "  local ts = nil\n"                                                                           \
    "  for j = 1, #f, 2 do if f[j] == 't' then ts = tonumber(f[j + 1]) end end\n"                  \
    "  if ts == nil or ts >= cutoff then keep = i break end\n"                                     \
    "end\n"                                                                                        \
    "if keep == nil and #old > 0 then\n"                                                           \
    "  local n = tonumber(string.match(old[#old][1], '^(%d+)')) + 1\n"                             \
    "  redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d-0', n))\n"                          \
    "elseif keep ~= nil and keep > 1 then\n"                                                       \
    "  redis.call('XTRIM', KEYS[1], 'MINID', old[keep][1])\n"                                      \
    "end\n"                                                                                        \
    "redis.call('PUBLISH', ARGV[9], ARGV[5] .. '\\n' .. ARGV[6] .. '\\n' .. sseq .. '\\n' ..\n"    \
    "           epoch .. '\\n' .. json)\n"                                                         \
    "return {json, seq, epoch}\n"

/*
 * publish — publishes a non-persisted event (progress, gap, terminal bytes) for a project, if the
 * origin announced it.  KEYS: announced projects.  ARGV: 1 origin, 2 project, 3 channel,
 * 4 message, 5 the origin's announcement.  Returns 1 published, 0 refused.
 */
#define CLUSTER_LUA_PUBLISH                                                                        \
    CLUSTER_LUA_ANNOUNCED("KEYS[1]", "ARGV[1]", "ARGV[2]", "ARGV[5]")                                         \
    "  return 0\n"                                                                                 \
    "end\n"                                                                                        \
    "redis.call('PUBLISH', ARGV[3], ARGV[4])\n"                                                    \
    "return 1\n"

/*
 * trim — removes one agent from ws:agents:{state} if its owner has not refreshed it for ARGV[2] ms
 * (its JSON's seen_ms, the owner's clock, older than that by Redis's clock, or missing).
 * KEYS: agents hash.  ARGV: 1 field, 2 max age (ms).  Returns 1 removed, 0 kept.
 */
#define CLUSTER_LUA_TRIM                                                                           \
    "local v = redis.call('HGET', KEYS[1], ARGV[1])\n"                                              \
    "if not v then return 0 end\n"                                                                 \
    "local ok, o = pcall(cjson.decode, v)\n"                                                       \
    "local t = redis.call('TIME')\n"                                                               \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"                      \
    "if ok and type(o) == 'table' and tonumber(o.seen_ms) and\n"                                   \
    "   now - tonumber(o.seen_ms) < tonumber(ARGV[2]) then return 0 end\n"                        \
    "redis.call('HDEL', KEYS[1], ARGV[1])\n"                                                       \
    "return 1\n"

/*
 * page — one page of the replay stream with the stream's state, read atomically.
 * KEYS: stream, seq counter, epoch.  ARGV: 1 first id wanted ("<seq>-0"), 2 COUNT.
 * Returns {epoch or "", current seq, first retained seq (0: empty), entries}.
 */
#define CLUSTER_LUA_PAGE                                                                           \
    "local epoch = redis.call('GET', KEYS[3]) or ''\n"                                             \
    "local seq = tonumber(redis.call('GET', KEYS[2]) or '0')\n"                                    \
    "local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)\n"                          \
    "local firstseq = 0\n"                                                                         \
    "if first[1] then firstseq = tonumber(string.match(first[1][1], '^(%d+)')) end\n"              \
    "local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', tonumber(ARGV[2]))\n"    \
    "return {epoch, seq, firstseq, entries}\n"

/*
 * admit — cluster-wide admission (B9), one attempt.
 * KEYS: 1 ws:limits:{ip:<IP>} (sorted set of attempts, score = ms), 2 (optional)
 *       ws:limits:{user:<FP>} (sorted set of leases, member = "<instance>:<conn>", score = expiry).
 * ARGV: 1 per-IP limit per 60 s (0: none), 2 per-user limit (0: none), 3 lease member,
 *       4 lease length (ms), 5 unique attempt id.
 * Returns {0, 0} admitted, or {retry_after_s, reason} (0 per-IP, 1 per-user).  Expired leases and
 * attempts older than the window are removed first.  The two keys are in different slots: on a
 * Redis Cluster this script would be split in two (see docs/cluster.md).
 */
#define CLUSTER_LUA_ADMIT                                                                          \
    "local t = redis.call('TIME')\n"                                                               \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"                      \
    "local perip = tonumber(ARGV[1])\n"                                                            \
    "if perip > 0 then\n"                                                                          \
    "  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60000)\n"                             \
    "  if redis.call('ZCARD', KEYS[1]) >= perip then\n"                                            \
    "    local o = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')\n"                            \
    "    local r = math.ceil((tonumber(o[2]) + 60000 - now) / 1000)\n"                             \
    "    if r < 1 then r = 1 end\n"                                                                \
    "    return {r, 0}\n"                                                                          \
    "  end\n"                                                                                      \
    "end\n"                                                                                        \
    "if #KEYS > 1 then\n"                                                                          \
    "  local peruser = tonumber(ARGV[2])\n"                                                        \
    "  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)\n"                                     \
    "  if peruser > 0 and not redis.call('ZSCORE', KEYS[2], ARGV[3]) and\n"                        \
    "     redis.call('ZCARD', KEYS[2]) >= peruser then\n"                                          \
    "    return {5, 1}\n"                                                                          \
    "  end\n"                                                                                      \
    "  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3])\n"                            \
    "  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]))\n"                                        \
    "end\n"                                                                                        \
    "if perip > 0 then\n"                                                                          \
    "  redis.call('ZADD', KEYS[1], now, ARGV[5])\n"                                                \
    "  redis.call('PEXPIRE', KEYS[1], 60000)\n"                                                    \
    "end\n"                                                                                        \
    "return {0, 0}\n"

/*
 * lease — extends an existing user lease (heartbeat).  KEYS: user set.  ARGV: member, lease ms.
 * Returns 1 if the lease existed.
 */
#define CLUSTER_LUA_LEASE                                                                          \
    "if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end\n"                            \
    "local t = redis.call('TIME')\n"                                                               \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"                      \
    "redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])\n"                              \
    "redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))\n"                                          \
    "return 1\n"

#endif
