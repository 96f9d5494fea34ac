-- Cluster placement (issue 20): which media node runs a meeting's media. One row per
-- meeting; `epoch` starts at 1 and grows by one per move, and every change is a
-- compare-and-swap on it, so two control replicas never place one meeting twice and
-- a node that still holds an older epoch can be fenced. `cost_units` is what the
-- placement reserved on the node (the cost model's reference meeting).
-- Keep the two dialects semantically identical (postgres).
create table meeting_placements (
    meeting_id text primary key references meetings (id),
    node_id text not null,
    epoch bigint not null check (epoch >= 1),
    cost_units bigint not null check (cost_units >= 0),
    placed_at bigint not null
);
create index meeting_placements_by_node on meeting_placements (node_id);
