-- the dictionary reads users: drop it first
DROP DICTIONARY IF EXISTS users_plan ON CLUSTER {{.CLUSTER}};
DROP TABLE IF EXISTS users ON CLUSTER {{.CLUSTER}};
