-- Agenda chapters: a moderator marks "agenda item N starts now". Shown as markers in
-- the live playlists and stored for the archive manifest.
create table chapters (
    id text primary key,
    meeting_id text not null references meetings (id),
    title text not null,
    at bigint not null,
    created_by text not null
);
create index chapters_by_meeting on chapters (meeting_id, at);
