-- Execution events and ingested events have a retention period: their purge
-- reads by time. Ingested event ids are unique per tenant (one tenant can no
-- longer shadow another's ids).
CREATE INDEX events_completed ON events (completed_at);
ALTER TABLE ingested_events DROP CONSTRAINT ingested_events_event_id_key;
ALTER TABLE ingested_events ADD CONSTRAINT ingested_events_tenant_event_id_key UNIQUE (tenant, event_id);
CREATE INDEX ingested_events_received ON ingested_events (received_at);
