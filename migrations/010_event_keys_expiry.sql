-- Idempotency keys of POST /v1/events expire with the events retention
-- (sink.policies.retention.events; none: kept, as the events are): a key is expired once both its
-- event's ts and its first post (received_at) are older than the retention. The API treats an
-- expired key as new when it is posted again and deletes expired keys (api/event-keys.ts); this
-- index serves both. A plain table on either flavour (a hypertable's unique key would have to
-- include the time column).
create index if not exists event_keys_expiry_idx on event_keys ((greatest(ts, received_at)));
