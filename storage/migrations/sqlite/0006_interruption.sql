-- Why an output ended before anyone stopped it (a recording whose spool disk filled
-- up: what was written is kept and finalized). Set with the stop the media plane
-- makes; `failure` stays for outputs that failed.
alter table recordings add column interruption text;
alter table streams add column interruption text;
