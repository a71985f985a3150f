-- The persisted record is encoded by the API alone (services/api/repository.py,
-- encode_product), for its answers and for the outbox events alike: one encoding of money
-- and timestamps everywhere.
DROP FUNCTION product_document(products);
