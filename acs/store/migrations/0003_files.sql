-- Files CPEs download (firmware images, configuration files) and their metadata.
CREATE TABLE files (
    id                bigserial PRIMARY KEY,
    name              text NOT NULL UNIQUE,
    size              bigint NOT NULL,
    sha256            text NOT NULL,
    file_type         text NOT NULL,
    oui               text NOT NULL DEFAULT '',
    product_class     text NOT NULL DEFAULT '',
    version           text,
    hardware_versions text[] NOT NULL DEFAULT '{}',
    metadata          jsonb NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
