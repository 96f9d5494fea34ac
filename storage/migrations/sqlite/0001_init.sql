-- Gremium control-plane schema (sqlite). Keep the two dialects semantically identical.
-- Times are unix milliseconds (bigint); ids are UUID strings.

create table meetings (
    id text primary key,
    title text not null,
    is_public bigint not null,
    state text not null check (state in ('open', 'ended')),
    retention_days bigint not null check (retention_days >= 0),
    legal_hold bigint not null default 0,
    created_by text not null,
    created_at bigint not null,
    ended_at bigint
);
create index meetings_by_created on meetings (created_at, id);

create table participants (
    id text primary key,
    meeting_id text not null references meetings (id),
    display_name text not null,
    consent_recording bigint not null default 0,
    consent_streaming bigint not null default 0,
    created_at bigint not null,
    left_at bigint
);
create index participants_by_meeting on participants (meeting_id, created_at);

create table recordings (
    id text primary key,
    meeting_id text not null references meetings (id),
    state text not null,
    failure text,
    requested_by text not null,
    created_at bigint not null,
    updated_at bigint not null
);
create index recordings_by_meeting on recordings (meeting_id, created_at);

create table streams (
    id text primary key,
    meeting_id text not null references meetings (id),
    state text not null,
    hls bigint not null,
    destinations text not null,
    failure text,
    requested_by text not null,
    created_at bigint not null,
    updated_at bigint not null
);
create index streams_by_meeting on streams (meeting_id, created_at);

-- Hash-chained audit ledger: one chain per meeting (chain_id = meeting id) plus
-- 'global' for events without a meeting. ledger_chains holds each chain's head so
-- that truncating the tail is detected too.
create table ledger_chains (
    chain_id text primary key,
    seq bigint not null,
    head text not null
);

create table ledger_entries (
    chain_id text not null,
    seq bigint not null,
    at bigint not null,
    kind text not null,
    actor text not null,
    subject text not null,
    data text not null,
    prev_hash text not null,
    hash text not null,
    primary key (chain_id, seq)
);
