-- Chapters are listed by `at` (Unix ms); two marks within the same millisecond tied,
-- and the tie-break by their (random) id shuffled them. `seq` counts a meeting's
-- marks from 1 in the order they were stored and breaks such ties.
alter table chapters add column seq bigint not null default 0;
