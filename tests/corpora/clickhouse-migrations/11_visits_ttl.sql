-- keep two years of raw visits; the daily rollup stays
ALTER TABLE visits MODIFY TTL visited_at + INTERVAL 2 YEAR;
