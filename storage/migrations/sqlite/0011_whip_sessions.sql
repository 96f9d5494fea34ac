-- WHIP publishing sessions (issue 20): which meeting and participant a session
-- belongs to and how many ICE restarts it has had (its ETag). In the database, not in
-- one process's memory, so a PATCH (trickle ICE, ICE restart) or DELETE reaches the
-- session through any control replica, and removing a participant through one replica
-- ends sessions registered through another. Rows go when the session is deleted, its
-- participant removed or its meeting ended.
-- Keep the two dialects semantically identical (sqlite).
create table whip_sessions (
    session_id text primary key,
    meeting_id text not null references meetings (id),
    participant_id text not null,
    ice_restarts bigint not null default 0 check (ice_restarts >= 0),
    created_at bigint not null
);
create index whip_sessions_by_participant on whip_sessions (meeting_id, participant_id);
