-- A request's reason type (requests made before it existed were support
-- cases the customer opened), its reference (a ticket or incident id),
-- when its access should start (NULL: when it is approved), and the rule
-- of the tenant's policy that applied when it was made (NULL: none).
ALTER TABLE requests ADD COLUMN reason_type TEXT NOT NULL DEFAULT 'customer_initiated_support';
ALTER TABLE requests ADD COLUMN reference TEXT;
ALTER TABLE requests ADD COLUMN starts_at_us BIGINT;
ALTER TABLE requests ADD COLUMN rule TEXT;
