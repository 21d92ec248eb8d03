DROP TABLE login_failures;
DROP TABLE action_requests;
DROP TABLE refresh_tokens;
DROP TABLE sessions;
DROP TABLE users;
