-- Run once by the postgres image, when it initialises an empty data volume
-- (/docker-entrypoint-initdb.d). MLflow keeps its tracking store and model registry in a
-- database of its own: it and tabops both keep their Alembic revision in a table named
-- alembic_version, so they cannot share one. The owner is POSTGRES_USER, who runs this.
CREATE DATABASE mlflow;
