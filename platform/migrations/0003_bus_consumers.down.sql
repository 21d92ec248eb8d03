DROP TABLE dead_letters;
DROP TABLE bus_members;
DROP TABLE bus_cursors;
