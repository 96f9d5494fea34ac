-- Recordings at rest: the wrapped data key (deleting it shreds the recording), the
-- stored objects and what post-processing found, and deletion.
create table recording_keys (
    recording_id text primary key references recordings (id),
    wrapped text not null,
    created_at bigint not null
);

alter table recordings add column media_key text;
alter table recordings add column media_sha256 text;
alter table recordings add column stored_bytes bigint;
alter table recordings add column plaintext_bytes bigint;
alter table recordings add column poster_key text;
alter table recordings add column poster_sha256 text;
alter table recordings add column duration_ms bigint;
alter table recordings add column probe text;
alter table recordings add column deleted_at bigint;
alter table recordings add column deletion_reason text;
alter table recordings add column manifest_key text;
alter table recordings add column manifest_sha256 text;
