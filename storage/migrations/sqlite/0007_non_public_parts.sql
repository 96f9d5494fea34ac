-- Whether any part of a recording was made while its meeting was non-public. Archive
-- access follows this (what the recording contains, decided when it was made), not
-- the meeting's current public flag: such a recording is for archivists and admins
-- only. Set (never cleared) by:
--   * the trigger below, in the transaction that inserts the recording, when the
--     meeting is non-public at that moment;
--   * every public switch, in its transaction, for each recording of the meeting that
--     has not ended (`Db::set_meeting_public`).
-- SQLite serializes writers, so a start and a switch cannot interleave: either the
-- switch sees the new recording or the insert sees the new flag.
alter table recordings add column non_public_parts bigint not null default 0;

create trigger recordings_started_non_public after insert on recordings
for each row when (select is_public from meetings where id = new.meeting_id) = 0
begin
    update recordings set non_public_parts = 1 where id = new.id;
end;

-- Recordings made before this column existed: reconstructed from the meeting's ledger
-- (its `meeting_created` entry says whether it started public, `public_changed`
-- entries say when it switched). A recording stays viewer-readable only when the
-- meeting was public when it started and no switch to non-public happened before it
-- ended (or at all, while it still runs); a meeting whose ledger does not say counts
-- as non-public.
update recordings set non_public_parts = 1 where not (
    coalesce(
        (select l.data like '%"public":true%' from ledger_entries l
          where l.chain_id = recordings.meeting_id and l.kind = 'public_changed'
            and l.at <= recordings.created_at
          order by l.seq desc limit 1),
        (select l.data like '%"public":true%' from ledger_entries l
          where l.chain_id = recordings.meeting_id and l.kind = 'meeting_created'
          order by l.seq limit 1),
        false)
    and not exists (
        select 1 from ledger_entries l
         where l.chain_id = recordings.meeting_id and l.kind = 'public_changed'
           and l.data like '%"public":false%'
           and l.at > recordings.created_at
           and (recordings.state not in ('finished', 'failed') or l.at <= recordings.updated_at))
);
