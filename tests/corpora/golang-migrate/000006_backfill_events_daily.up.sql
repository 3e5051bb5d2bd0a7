-- Rebuild the rollup from what events held before the view existed.
INSERT INTO events_daily
SELECT event_date, event_type, uniqState(user_id), count()
FROM events
WHERE event_date < today()
GROUP BY event_date, event_type;
