-- At most one running (not finished, not failed) recording and one running stream
-- per meeting, enforced by the database so that concurrent starts cannot both win.
-- "Running" is every non-terminal state: requested, starting, active, stopping. A
-- stopping output still writes its last data, so the next one starts once it has
-- finished or failed (the API's behaviour before this migration too).
--
-- Earlier versions could leave several running at once: the oldest of each meeting
-- keeps running, the others are closed as failed before the indexes are made.
update recordings
   set state = 'failed',
       failure = coalesce(failure, 'closed by migration 0008: another recording of the meeting was running')
 where state in ('requested', 'starting', 'active', 'stopping')
   and exists (select 1 from recordings o
                where o.meeting_id = recordings.meeting_id
                  and o.state in ('requested', 'starting', 'active', 'stopping')
                  and (o.created_at < recordings.created_at
                       or (o.created_at = recordings.created_at and o.id < recordings.id)));
update streams
   set state = 'failed',
       failure = coalesce(failure, 'closed by migration 0008: another stream of the meeting was running')
 where state in ('requested', 'starting', 'active', 'stopping')
   and exists (select 1 from streams o
                where o.meeting_id = streams.meeting_id
                  and o.state in ('requested', 'starting', 'active', 'stopping')
                  and (o.created_at < streams.created_at
                       or (o.created_at = streams.created_at and o.id < streams.id)));
create unique index recordings_one_running on recordings (meeting_id)
    where state in ('requested', 'starting', 'active', 'stopping');
create unique index streams_one_running on streams (meeting_id)
    where state in ('requested', 'starting', 'active', 'stopping');

-- RTMP destination URLs and keys are secrets: they are kept sealed with a data key
-- of the stream (wrapped by the master key), only while the stream runs. The
-- `destinations` column keeps just what may be shown (scheme, host, port, app).
alter table streams add column destinations_key text;
alter table streams add column destinations_sealed text;
-- Rows written before held URLs and keys in clear: keep only each URL's scheme.
update streams
   set destinations = coalesce((select json_agg(json_build_object('url',
            case when position('://' in (d ->> 'url')) > 0
                 then split_part(d ->> 'url', '://', 1) || '://…'
                 else '…' end))::text
         from json_array_elements(streams.destinations::json) d), '[]')
 where destinations <> '[]';
