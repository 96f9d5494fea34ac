-- Media events the control plane has applied (database, ledger, WebSocket event), by
-- the event id the media node gave them. With several control replicas sharing one
-- durable consumer an event may be delivered again (a replica died before its ack);
-- an id found here is not applied twice. Rows are pruned after a while: redelivery
-- happens within minutes, not days.
create table applied_media_events (
    event_id text primary key,
    applied_at bigint not null
);
create index applied_media_events_by_time on applied_media_events (applied_at);
