-- The moderator's layout choice (JSON: {"kind":"grid","pinned":null,"podium":[]}),
-- kept so a media session that starts later, or on another node, uses it.
alter table meetings add column layout text not null default '{"kind":"grid"}';
