-- Operator-registered JSON Schemas per capability type: Task API submissions
-- are validated against input_schema, and lease frames carry both. One row
-- per capability, shared by every tenant. Documents are stored as JSON text.
CREATE TABLE capability_schemas (
    capability    TEXT PRIMARY KEY NOT NULL,
    input_schema  TEXT NOT NULL,
    output_schema TEXT,
    updated_at    BIGINT NOT NULL
);
