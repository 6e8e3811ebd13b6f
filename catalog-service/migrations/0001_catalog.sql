-- Catalog's data: the same rules the JSON data files obey (catalog-service/src/catalog.rs):
-- positive ids, unique ids and slugs, a slug that is not blank, no negative price.

CREATE TABLE products (
    id integer NOT NULL,
    slug text NOT NULL,
    description text NOT NULL,
    price_in_cents integer NOT NULL,
    CONSTRAINT products_pkey PRIMARY KEY (id),
    CONSTRAINT products_id_positive CHECK (id > 0),
    -- Checked at the end of the transaction when it says SET CONSTRAINTS ... DEFERRED (as
    -- `catalog-service import` does), so that one import may swap two products' slugs.
    CONSTRAINT products_slug_unique UNIQUE (slug) DEFERRABLE INITIALLY IMMEDIATE,
    CONSTRAINT products_slug_not_blank CHECK (slug ~ '[^[:space:]]'),
    CONSTRAINT products_price_not_negative CHECK (price_in_cents >= 0)
);

CREATE TABLE customers (
    id integer NOT NULL,
    first_name text NOT NULL,
    last_name text NOT NULL,
    CONSTRAINT customers_pkey PRIMARY KEY (id),
    CONSTRAINT customers_id_positive CHECK (id > 0)
);
