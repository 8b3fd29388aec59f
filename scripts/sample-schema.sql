-- The sample schema of the local stack, created in every region's "app"
-- database by scripts/up.sh.  Idempotent.
--
-- users holds personal data: config/*.yaml mark it pii: true, so it is never
-- published.  orders and products are marked pii: false and replicate.
CREATE TABLE IF NOT EXISTS users (
    id          bigint PRIMARY KEY,
    email       text NOT NULL,
    name        text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS products (
    id          bigint PRIMARY KEY,
    sku         text NOT NULL UNIQUE,
    title       text NOT NULL,
    price       numeric(12,2) NOT NULL,
    tags        text[],
    attributes  jsonb,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS orders (
    id          uuid PRIMARY KEY,
    user_id     bigint NOT NULL,    -- a reference, not personal data
    product_id  bigint NOT NULL,
    quantity    int NOT NULL,
    total       numeric(12,2) NOT NULL,
    status      text NOT NULL DEFAULT 'new',
    ordered_on  date NOT NULL DEFAULT current_date,
    created_at  timestamptz NOT NULL DEFAULT now()
);
